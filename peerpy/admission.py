"""Admission of incoming connections: the half-open table, its bounds, eviction.

An OFFER costs us an RTCPeerConnection, a certificate, sockets and ICE and
DTLS work, and anyone who knows our id can send OFFERs that never complete.
Incoming connections that are not open yet ("half-open") are kept in an
:class:`Admission` table, oldest first, bounded in total
(``Limits.max_half_open``) and per remote id (``Limits.max_half_open_per_peer``):
a new OFFER beyond a bound closes the oldest half-open entry (of that id, or
of all), so the newest caller always gets a chance, and each entry lives at
most ``Timeouts.half_open`` (its :meth:`~Admission.deadline`).  Open
connections are never closed to make room; when only they fill
``Limits.max_connections``, the OFFER is refused.

The table is sans-I/O: it opens and closes nothing, and reads the time from
the clock it is given (``anyio.current_time`` in a :class:`~peerpy.peer.Peer`,
a fake one in tests).  :meth:`Admission.make_room` says whether an OFFER fits
and which entries to close for it; the peer closes them, builds the
connection and :meth:`~Admission.admit` s it.  Refusals and evictions are
counted in :attr:`Admission.crowded` and logged as one warning per
``Timeouts.half_open`` seconds (the rest at DEBUG), so a flood cannot flood
the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import attrs

if TYPE_CHECKING:
    from .config import Limits

__all__ = ["Admission", "Incoming", "Room"]


class Incoming(Protocol):
    """What the table needs of an incoming connection."""

    #: The remote peer's id.
    peer: str
    #: PeerJS's connection id.
    connection_id: str

    @property
    def open(self) -> bool: ...
    @property
    def closed(self) -> bool: ...


C = TypeVar("C", bound=Incoming)


@attrs.frozen
class Room(Generic[C]):
    """The verdict on one OFFER: whether it fits, and what to close first."""

    #: Whether the OFFER may get a connection.
    fits: bool
    #: Half-open entries to close for it, oldest first, each with the reason
    #: (already gone from the table).
    evicted: list[tuple[C, str]]


@attrs.define(eq=False)
class Admission(Generic[C]):
    """The half-open incoming connections of one peer (see the module docstring).

    Made as ``Admission(limits, half_open=seconds, clock=..., logger=...)``.
    """

    _limits: Limits
    _timeout: float = attrs.field(kw_only=True, alias="half_open")
    _clock: Callable[[], float] = attrs.field(kw_only=True)
    _log: logging.Logger = attrs.field(kw_only=True, alias="logger")
    # (peer, connection id) -> (connection, deadline), oldest first.
    _entries: dict[tuple[str, str], tuple[C, float]] = attrs.field(init=False, factory=dict)
    #: OFFERs refused and half-open connections closed for room, so far.
    crowded: int = attrs.field(init=False, default=0)
    _logged: float = attrs.field(init=False, default=-math.inf)

    def half_open(self) -> list[C]:
        """The entries neither open nor closed yet, oldest first."""
        self._prune()
        return self._oldest()

    def admit(self, conn: C) -> None:
        """Add a new incoming connection, due to open by ``now + Timeouts.half_open``.

        A repeated OFFER (same remote and connection id) replaces its entry
        and goes last.
        """
        key = (conn.peer, conn.connection_id)
        self._entries.pop(key, None)
        self._entries[key] = (conn, self._clock() + self._timeout)

    def deadline(self, conn: C) -> float | None:
        """When ``conn`` must be open (clock time), ``None`` if it is not in the table."""
        entry = self._entries.get((conn.peer, conn.connection_id))
        return entry[1] if entry is not None and entry[0] is conn else None

    def discard(self, conn: C) -> None:
        """Remove ``conn`` (open, failed or timed out) if it is still the entry for its key."""
        key = (conn.peer, conn.connection_id)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is conn:
            del self._entries[key]

    def make_room(self, src: str, connection_id: str, connections: int) -> Room[C]:
        """Decide on an OFFER from ``src`` while ``connections`` are live (half-open included).

        Evicts the oldest entries beyond each bound in turn (per remote id,
        in total, then ``max_connections``); every half-open entry counts
        among ``connections``, so each eviction frees one.  Nothing is closed
        here: the caller closes what :attr:`Room.evicted` lists.
        """
        limits = self._limits
        self._prune()
        evicted: list[tuple[C, str]] = []
        from_src = [conn for conn, _ in self._entries.values() if conn.peer == src]
        why = f"{src} has {len(from_src)} half-open (Limits.max_half_open_per_peer)"
        evicted += self._evict(from_src, len(from_src) + 1 - limits.max_half_open_per_peer, why)
        count = len(self._entries)
        why = f"{count} are half-open (Limits.max_half_open)"
        evicted += self._evict(self._oldest(), count + 1 - limits.max_half_open, why)
        connections -= len(evicted)
        why = f"{connections} connections in all (Limits.max_connections)"
        freed = self._evict(self._oldest(), connections + 1 - limits.max_connections, why)
        connections -= len(freed)
        evicted += freed
        if connections >= limits.max_connections:
            why = f"{connections} connections are open (Limits.max_connections)"
        elif limits.max_half_open <= 0 or limits.max_half_open_per_peer <= 0:
            why = "Limits.max_half_open or max_half_open_per_peer is 0"
        else:
            return Room(True, evicted)
        self._report(f"refusing {connection_id} from {src}: {why}")
        return Room(False, evicted)

    def _oldest(self) -> list[C]:
        return [conn for conn, _ in self._entries.values()]

    def _prune(self) -> None:
        for key, (conn, _) in list(self._entries.items()):
            if conn.open or conn.closed:
                del self._entries[key]

    def _evict(self, candidates: list[C], count: int, why: str) -> list[tuple[C, str]]:
        evicted = []
        for conn in candidates[: max(count, 0)]:
            del self._entries[(conn.peer, conn.connection_id)]
            self._report(f"closing {conn.connection_id} from {conn.peer}: {why}")
            evicted.append((conn, why))
        return evicted

    def _report(self, what: str) -> None:
        """Count a refused OFFER or a closed entry; warn at most once per half_open s."""
        self.crowded += 1
        now = self._clock()
        if now < self._logged + self._timeout:
            self._log.debug("too many incoming connections: %s", what)
            return
        self._logged = now
        self._log.warning(
            "too many incoming connections (an OFFER flood?): %s; %d OFFERs refused or "
            "half-open connections closed so far, logged once per %g s",
            what,
            self.crowded,
            self._timeout,
        )
