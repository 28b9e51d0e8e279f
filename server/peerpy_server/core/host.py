"""What the broker's parts may use of it: the :class:`Host` and :class:`HttpView` Protocols.

A session, a transport and the cluster each hold the broker as a
:class:`Host`, never as the concrete :class:`~peerpy_server.broker.Broker`:
the Protocol lists everything they may touch, so a reader sees the whole
dependency here and a test can pass a small fake.  The HTTP API
(:func:`peerpy_server.transports.http.respond`) reads the broker through
:class:`HttpView`.  :class:`~peerpy_server.broker.Broker` implements both.

Who uses what:

* sessions (:mod:`peerpy_server.core.session`): ``config``, ``realm``,
  ``stats``, ``warnings``, ``cluster`` (to claim an id), ``now``, ``forget``;
* transports (:mod:`peerpy_server.transports`): the same, plus ``running``,
  ``admit``, ``settled``, ``close_later``, ``write_gathered`` and ``view``;
* the cluster (:mod:`peerpy_server.cluster`): ``config``, ``realm``,
  ``stats``, ``warnings``, ``now`` and ``write_gathered``, and :data:`TICK`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

if TYPE_CHECKING:
    from ..config import BrokerConfig
    from ..logs import WarningLimiter
    from .ice_access import IceRequest
    from .realm import Client, Link, Realm
    from .session import Session
    from .stats import Stats

__all__ = ["TICK", "Claims", "Host", "HttpView", "Registration"]

#: How often the broker's timers run (the realm's and admission's sweeps, the
#: cluster's refreshes); ``peer`` checks liveness every 300 ms.
TICK: Final = 0.25


@attrs.frozen
class Registration:
    """What a client asks for in its WebSocket URL (``?key=&id=&token=&ext=``)."""

    key: str
    peer_id: str
    token: str
    #: The client asked for the rooms extension (see :meth:`Realm.connect`).
    rooms: bool = False


class Claims(Protocol):
    """Cluster mode's registration: an id is claimed in Redis, the answer comes later."""

    def claim(self, link: Link, asked: Registration, done: Callable[[Client | None], None]) -> None:
        """Register ``asked.peer_id`` cluster-wide, then locally; ``done(client or None)`` after."""


class HttpView(Protocol):
    """What the plain HTTP API shows of the broker."""

    @property
    def config(self) -> BrokerConfig:
        """The options (path, CORS origins, discovery)."""

    def is_taken(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is registered here (``/id`` picks another)."""

    def peers(self, answer: Callable[[list[str]], None]) -> None:
        """Call ``answer(ids)`` with the registered ids (``/peers``).

        At once with this broker's ids, or in cluster mode once Redis listed
        the whole cluster's.
        """

    def ice_servers(
        self, request: IceRequest, answer: Callable[[int, list[dict[str, Any]] | None], None]
    ) -> None:
        """Call ``answer(status, servers)`` once for ``/ice`` (:mod:`.ice_access`).

        200 and the ICE servers of the registered peer, else 401, 429 or 503
        and ``None``.  At once, or in cluster mode once Redis said whether
        the id is registered (within a bounded wait).
        """

    def health(self) -> tuple[int, dict[str, Any]]:
        """The status code and JSON report of ``/health``."""

    def metrics(self) -> bytes:
        """The Prometheus text of ``/metrics``."""

    def room_members(self, room: str, answer: Callable[[list[str]], None]) -> None:
        """Call ``answer(ids)`` with the members of ``room`` (``/rooms/<name>``).

        At once without Redis, in cluster mode once Redis listed them.
        """


class Host(Protocol):
    """What a session, a transport and the cluster may use of the broker."""

    #: The broker's options.
    config: BrokerConfig
    #: The registry and relay rules.
    realm: Realm
    #: The counters behind ``/metrics``.
    stats: Stats
    #: Where repeated warnings are rate-limited.
    warnings: WarningLimiter

    @property
    def cluster(self) -> Claims | None:
        """Cluster mode's registration, or ``None`` when registering is the realm's alone."""

    @property
    def view(self) -> HttpView:
        """What the HTTP API shows."""

    @property
    def running(self) -> bool:
        """Whether the broker is started and not yet closing."""

    def now(self) -> float:
        """The monotonic clock the realm runs on."""

    def admit(self, session: Session) -> bool:
        """Track a new connection; ``False`` if a limit (or shutdown) refuses it."""

    def settled(self, session: Session) -> None:
        """The connection's request arrived: its handshake deadline no longer applies."""

    def forget(self, session: Session) -> None:
        """The connection is gone (idempotent)."""

    def close_later(self, session: Session) -> None:
        """Abort ``session`` if its closing handshake is not done in time."""

    def write_gathered(self) -> None:
        """Write the frames the built-in server gathered while handling a read."""
