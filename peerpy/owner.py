"""What a connection needs from the peer that owns it: the :class:`Owner` Protocol.

A :class:`~peerpy.connection.Connection` (data or media) depends on its
:class:`~peerpy.peer.Peer` only through :class:`Owner`: the configuration it
reads, a way to send signaling messages through the broker, to run background
tasks, to make a new peer connection (a call's, or a resumed data
connection's next generation) and to be forgotten once closed.  The code that
makes a peer's connections (:mod:`peerpy.incoming`, :mod:`peerpy.outgoing`)
also registers them: :class:`Host`.  A narrow, explicit dependency back to the
owner, which tests can fake.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection
    from peerpy_protocol.messages import Relay

    from .config import Limits, Timeouts
    from .connection import Connection
    from .network import NetworkPolicy

__all__ = ["Host", "Owner"]


class Owner(Protocol):
    """What a connection needs from its :class:`~peerpy.peer.Peer`."""

    @property
    def network(self) -> NetworkPolicy: ...
    @property
    def timeouts(self) -> Timeouts: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def open(self) -> bool: ...
    async def _send_relay(self, message: Relay) -> None: ...
    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None: ...
    def _forget(self, connection: Connection) -> None: ...
    def _new_pc(self) -> RTCPeerConnection: ...


class Host(Owner, Protocol):
    """What the code making a peer's connections (incoming, outgoing) needs of the peer."""

    @property
    def id(self) -> str | None: ...
    @property
    def destroyed(self) -> bool: ...
    def _register(self, conn: Connection) -> None: ...
