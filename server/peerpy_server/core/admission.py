"""Which connections the broker lets in, and how long they may stay silent.

An :class:`Admission` is the table of open connections of every transport
(the built-in server's TCP connections, the ASGI app's WebSockets).  It
applies the per-source limits when a connection arrives
(:meth:`Admission.admit`):

* at most ``max_connections_per_ip`` connections per remote address, of which
  at most ``max_handshakes_per_ip`` still in their handshake (no request yet);
* at most ``connection_limit`` in total; when that is reached, the oldest
  connection still in its handshake is closed to make room, so that a flood of
  silent sockets cannot lock everyone out for ``handshake_timeout``;

and runs two sweeps for the broker's timer: :meth:`Admission.sweep` closes the
connections that sent no request within ``handshake_timeout``, and
:meth:`Admission.ping` pings every WebSocket and closes those that sent nothing
since the previous ping.

Like the realm it does no I/O and reads no clock (``now`` is passed in): a
connection is anything with the few members of :class:`Tracked`, and closing
one is a call to its :meth:`~Tracked.abort`.  Tests drive it with fake
connections and a moved clock.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Final, Generic, Protocol, TypeVar

from ..config import BrokerConfig
from ..logs import WarningLimiter
from .stats import Stats

__all__ = ["Admission", "Tracked"]

# These warnings were the broker's before this module existed; they keep its logger.
logger: Final = logging.getLogger("peerpy_server.broker")


class Tracked(Protocol):
    """What admission needs of a connection (a :class:`~peerpy_server.core.session.Session`)."""

    #: Whether the broker's ping timer pings this kind of connection.
    PINGED: ClassVar[bool]
    #: The remote address (per-address limits).
    ip: str
    #: When the connection was accepted (the handshake deadline counts from it).
    opened_at: float
    #: Whether something was read since the last ping round.
    active: bool

    @property
    def is_websocket(self) -> bool:
        """Whether the WebSocket handshake completed."""

    def ping(self) -> None:
        """Send a WebSocket ping."""

    def abort(self) -> None:
        """Drop the connection now (its transport calls :meth:`Admission.forget` later)."""


T = TypeVar("T", bound=Tracked)


class Admission(Generic[T]):
    """The open connections, per address and in their handshake (see the module docstring)."""

    __slots__ = (
        "_config",
        "_open",
        "_pending",
        "_pending_per_ip",
        "_per_ip",
        "_stats",
        "_warnings",
    )

    def __init__(self, config: BrokerConfig, stats: Stats, warnings: WarningLimiter) -> None:
        self._config = config
        self._stats = stats
        self._warnings = warnings
        self._open: dict[T, None] = {}
        self._pending: dict[T, None] = {}  # no request yet, oldest first
        self._per_ip: dict[str, int] = {}  # open connections per remote address
        self._pending_per_ip: dict[str, int] = {}  # of which still in their handshake

    def __len__(self) -> int:
        return len(self._open)

    def connections(self) -> list[T]:
        """The open connections, oldest first (a copy: closing them changes the table)."""
        return list(self._open)

    def connections_from(self, ip: str) -> tuple[int, int]:
        """How many connections ``ip`` has open, and how many of them are in their handshake."""
        return self._per_ip.get(ip, 0), self._pending_per_ip.get(ip, 0)

    def admit(self, connection: T, now: float) -> bool:
        """Track a new connection from ``connection.ip``; ``False`` if a limit refuses it.

        Per address: at most ``max_connections_per_ip`` connections, of which
        ``max_handshakes_per_ip`` still in their handshake (past that, the
        address's oldest handshake is closed for the new one; established
        WebSockets are never closed to make room).  In total: at most
        ``connection_limit``; when that is reached, the oldest connection still
        in its handshake is closed to make room (a flood of silent sockets
        cannot lock everyone out for the handshake timeout).
        """
        config = self._config
        ip = connection.ip
        cap = config.max_connections_per_ip
        if cap is not None and self._per_ip.get(ip, 0) >= cap:
            self._stats.refuse("per-ip")
            self._warnings.warning(
                logger, "per-ip", now, "Too many connections from %s; refused one", ip
            )
            return False
        cap = config.max_handshakes_per_ip
        if cap is not None and self._pending_per_ip.get(ip, 0) >= cap:
            self._stats.refuse("handshakes-per-ip")
            self._warnings.warning(
                logger, "handshakes-per-ip", now, "Too many handshakes from %s; closed one", ip
            )
            # Close that address's oldest handshake, not the newcomer: a slowloris
            # must then outpace the clients behind its address (docs/broker.md).
            oldest = next(other for other in self._pending if other.ip == ip)
            self.forget(oldest)
            oldest.abort()
        if len(self._open) >= config.connection_limit:
            self._stats.refuse("connections-full")
            if not self._pending:
                self._warnings.warning(logger, "full", now, "Too many connections; refused one")
                return False
            oldest = next(iter(self._pending))
            self._warnings.warning(
                logger, "evicted", now, "Too many connections; closed one still in its handshake"
            )
            self.forget(oldest)
            oldest.abort()
        self._open[connection] = None
        self._pending[connection] = None
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self._pending_per_ip[ip] = self._pending_per_ip.get(ip, 0) + 1
        return True

    def settled(self, connection: T) -> None:
        """The connection's request arrived: the handshake deadline no longer applies."""
        if self._pending.pop(connection, _ABSENT) is None:
            _decrement(self._pending_per_ip, connection.ip)

    def forget(self, connection: T) -> None:
        """The connection is gone (idempotent)."""
        if self._open.pop(connection, _ABSENT) is None:
            _decrement(self._per_ip, connection.ip)
        self.settled(connection)

    def sweep(self, now: float) -> None:
        """Abort the connections that sent no request within ``handshake_timeout``."""
        deadline = now - self._config.handshake_timeout
        pending = self._pending
        while pending:
            connection = next(iter(pending))
            if connection.opened_at > deadline:
                break
            self.settled(connection)
            self._stats.refuse("handshake-timeout")
            self._warnings.warning(
                logger,
                "handshake-timeout",
                now,
                "No request within handshake_timeout from %s; closing it",
                connection.ip,
            )
            connection.abort()

    def ping(self, now: float) -> None:
        """One ping round: ping each WebSocket read since the last round, abort the others.

        Only connections whose transport is :attr:`~Tracked.PINGED` (an ASGI
        server pings its own WebSockets).
        """
        for connection in list(self._open):
            if not connection.is_websocket or not connection.PINGED:
                continue
            if connection.active:
                connection.active = False
                connection.ping()
            else:
                self._warnings.warning(
                    logger, "ping", now, "No answer to ping; closing a connection"
                )
                connection.abort()


_ABSENT: Final = object()


def _decrement(counts: dict[str, int], ip: str) -> None:
    left = counts[ip] - 1
    if left:
        counts[ip] = left
    else:
        del counts[ip]
