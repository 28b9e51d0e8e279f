"""The connection registry: a peer's live connections, by remote id and connection id.

PeerJS names a connection by the pair (remote peer id, connection id); both
sides use the same pair.  :class:`Registry` holds every live connection of a
:class:`~peerpy.peer.Peer`, data and media, incoming (from its OFFER on) and
outgoing, and fails the ones a broker event concerns: the outgoing
connections still waiting for their ANSWER when the broker session is lost or
says EXPIRE, every connection with a remote that LEFT; and tells the resuming
ones when the broker session registers again.

Pure code: no socket, no clock, no event loop.  Failing a connection only
records the error and asks its own task to close it (``Connection._fail``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .exceptions import ConnectionClosedError, PeerError

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Registry"]


class Registry:
    """Live connections by ``(peer, connection_id)``, in the order they were added."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, str], Connection] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[Connection]:
        """A snapshot: the registry may change while it is iterated."""
        return iter(list(self._connections.values()))

    def get(self, peer: str, connection_id: str) -> Connection | None:
        """The connection with ``peer`` whose id is ``connection_id``, if any."""
        return self._connections.get((peer, connection_id))

    def add(self, conn: Connection) -> None:
        """Register ``conn``; one already holding its pair fails (opened again)."""
        key = (conn.peer, conn.connection_id)
        old = self._connections.get(key)
        if old is not None:
            old._fail(ConnectionClosedError(f"{conn.peer} opened the same connection again"))
        self._connections[key] = conn

    def forget(self, conn: Connection) -> None:
        """Remove ``conn`` if it is the one registered for its pair (it closed)."""
        key = (conn.peer, conn.connection_id)
        if self._connections.get(key) is conn:
            del self._connections[key]

    def fail_pending(
        self, error: PeerError | Callable[[Connection], PeerError], peer: str | None = None
    ) -> None:
        """Fail outgoing connections (to ``peer``, or all) that got no answer yet.

        ``error`` is the error, or makes each connection's own.  A connection
        resuming on a new peer connection (see :mod:`peerpy.generation`) is not
        failed when our broker session is lost (``peer`` is ``None``: it waits
        for the next one); told that ``peer`` is gone (EXPIRE), it decides itself.
        """
        for conn in self:
            if peer not in (None, conn.peer):
                continue
            resumable = getattr(conn, "_resumable", None)
            if resumable is not None and resumable.reconnecting:
                if peer is not None:
                    resumable.switch.expired()
            elif conn.originator and not conn._remote_set:
                conn._fail(error if isinstance(error, PeerError) else error(conn))

    def registered_again(self) -> None:
        """Our broker session registered again: connections resuming retry at once."""
        for conn in self:
            if conn._switch is not None and conn._switch.active:
                conn._switch.registered()

    def fail_peer(self, peer: str, error: PeerError) -> None:
        """Fail every connection with ``peer`` (it left the broker)."""
        for conn in self:
            if conn.peer == peer:
                conn._fail(error)
