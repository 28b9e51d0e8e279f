"""The half-open table (peerpy.admission) on a fake clock, with fake connections: no sockets."""

from __future__ import annotations

import logging

import attrs
import pytest

from peerpy.admission import Admission
from peerpy.config import Limits

HALF_OPEN = 3.0


@attrs.define
class Conn:
    """An incoming connection as the table sees it."""

    peer: str
    connection_id: str
    open: bool = False
    closed: bool = False


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def table(clock: Clock, **limits: int) -> Admission[Conn]:
    return Admission(
        Limits(**limits),
        half_open=HALF_OPEN,
        clock=clock,
        logger=logging.getLogger("peerpy.test.admission"),
    )


def offer(admission: Admission[Conn], conn: Conn, connections: int) -> list[Conn]:
    """Ask for room for ``conn``, admit it if it fits; return what was evicted."""
    room = admission.make_room(conn.peer, conn.connection_id, connections)
    if room.fits:
        admission.admit(conn)
    return [evicted for evicted, _ in room.evicted]


def test_offers_within_the_bounds_are_admitted_oldest_first() -> None:
    """Below every bound an OFFER fits, evicts nothing, and is listed in arrival order."""
    admission = table(Clock())
    conns = [Conn(f"p{n}", f"dc_{n}") for n in range(3)]
    for n, conn in enumerate(conns):
        assert offer(admission, conn, connections=n) == []
    assert admission.half_open() == conns
    assert admission.crowded == 0


def test_the_per_peer_bound_evicts_that_peers_oldest() -> None:
    """Past max_half_open_per_peer the oldest entry of that id goes, the others stay."""
    admission = table(Clock(), max_half_open_per_peer=2)
    other = Conn("bob", "dc_bob")
    first, second, third = (Conn("mallory", f"dc_{n}") for n in range(3))
    for n, conn in enumerate([first, other, second]):
        offer(admission, conn, connections=n)
    room = admission.make_room("mallory", third.connection_id, connections=3)
    assert room.fits
    assert room.evicted == [(first, "mallory has 2 half-open (Limits.max_half_open_per_peer)")]
    admission.admit(third)
    assert admission.half_open() == [other, second, third]
    assert admission.crowded == 1


def test_the_total_bound_evicts_the_oldest_of_all() -> None:
    """Past max_half_open the oldest entry goes, whoever sent it."""
    admission = table(Clock(), max_half_open=3)
    conns = [Conn(f"p{n}", f"dc_{n}") for n in range(5)]
    evicted = [offer(admission, conn, connections=min(n, 3)) for n, conn in enumerate(conns)]
    assert evicted == [[], [], [], [conns[0]], [conns[1]]]
    assert admission.half_open() == conns[2:]


def test_open_connections_are_never_evicted_and_a_full_peer_refuses() -> None:
    """With max_connections reached by open connections alone, the OFFER is refused."""
    admission = table(Clock(), max_connections=3)
    room = admission.make_room("mallory", "dc_x", connections=3)
    assert not room.fits
    assert room.evicted == []
    assert admission.crowded == 1


def test_max_connections_evicts_a_half_open_entry_to_fit() -> None:
    """Two open connections and one half-open fill 3: the half-open one makes room."""
    admission = table(Clock(), max_connections=3)
    waiting = Conn("mallory", "dc_0")
    offer(admission, waiting, connections=2)
    room = admission.make_room("alice", "dc_1", connections=3)
    assert room.fits
    assert room.evicted == [(waiting, "3 connections in all (Limits.max_connections)")]
    assert admission.half_open() == []


def test_evictions_count_as_freed_connections() -> None:
    """An eviction for a half-open bound also frees a slot under max_connections."""
    admission = table(Clock(), max_connections=4, max_half_open=2)
    old, new = Conn("p1", "dc_1"), Conn("p2", "dc_2")
    offer(admission, old, connections=2)
    offer(admission, new, connections=3)
    room = admission.make_room("p3", "dc_3", connections=4)
    assert room.fits
    assert [conn for conn, _ in room.evicted] == [old]


@pytest.mark.parametrize("limits", [{"max_half_open": 0}, {"max_half_open_per_peer": 0}])
def test_a_zero_bound_refuses_every_offer(limits: dict[str, int]) -> None:
    """max_half_open=0 or max_half_open_per_peer=0 refuses every OFFER."""
    room = table(Clock(), **limits).make_room("alice", "dc_1", connections=0)
    assert not room.fits


def test_open_and_closed_entries_leave_the_table() -> None:
    """An entry that opened or closed is no longer half-open and counts against no bound."""
    admission = table(Clock(), max_half_open=2)
    opened, closed = Conn("p1", "dc_1"), Conn("p2", "dc_2")
    offer(admission, opened, connections=0)
    offer(admission, closed, connections=1)
    opened.open = True
    closed.closed = True
    assert admission.half_open() == []
    assert offer(admission, Conn("p3", "dc_3"), connections=1) == []


def test_a_repeated_offer_goes_last_with_a_new_deadline() -> None:
    """The same (peer, connection id) again replaces its entry, at the back, due later."""
    clock = Clock()
    admission = table(clock)
    first, other = Conn("alice", "dc_1"), Conn("bob", "dc_2")
    offer(admission, first, connections=0)
    offer(admission, other, connections=1)
    assert admission.deadline(first) == 100.0 + HALF_OPEN
    clock.now = 102.0
    again = Conn("alice", "dc_1")
    offer(admission, again, connections=2)
    assert admission.half_open() == [other, again]
    assert admission.deadline(again) == 102.0 + HALF_OPEN
    assert admission.deadline(first) is None  # replaced
    admission.discard(first)  # a replaced entry's end does not remove its successor
    assert admission.half_open() == [other, again]
    admission.discard(again)
    assert admission.half_open() == [other]


def test_crowding_is_logged_once_per_half_open_seconds(caplog: pytest.LogCaptureFixture) -> None:
    """Every refusal and eviction is counted; one WARNING per Timeouts.half_open, the rest DEBUG."""
    clock = Clock()
    admission = table(clock, max_half_open=1)
    caplog.set_level(logging.DEBUG, logger="peerpy.test.admission")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    for n in range(10):
        offer(admission, Conn(f"p{n}", f"dc_{n}"), connections=1)
    assert admission.crowded == 9
    assert len(warnings()) == 1
    assert "closing dc_0 from p0: 1 are half-open (Limits.max_half_open)" in warnings()[0]
    clock.now = 100.0 + HALF_OPEN - 0.5
    offer(admission, Conn("late", "dc_late"), connections=1)
    assert len(warnings()) == 1
    clock.now = 100.0 + HALF_OPEN
    offer(admission, Conn("later", "dc_later"), connections=1)
    assert len(warnings()) == 2
    assert "11 OFFERs refused or half-open connections closed so far" in warnings()[1]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 9
