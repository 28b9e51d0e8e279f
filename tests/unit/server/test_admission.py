"""Per-address admission, the handshake deadline and the ping round (core.admission)."""

from __future__ import annotations

from typing import Any, ClassVar

from peerpy_server.config import BrokerConfig
from peerpy_server.core.admission import Admission
from peerpy_server.core.stats import Stats
from peerpy_server.logs import WarningLimiter


class FakeConnection:
    """A tracked connection: records pings and aborts."""

    PINGED: ClassVar[bool] = True

    def __init__(self, ip: str = "192.0.2.1", opened_at: float = 0.0) -> None:
        self.ip = ip
        self.opened_at = opened_at
        self.active = True
        self.websocket = True
        self.pings = 0
        self.aborted = False

    @property
    def is_websocket(self) -> bool:
        return self.websocket

    def ping(self) -> None:
        self.pings += 1

    def abort(self) -> None:
        self.aborted = True


class Unpinged(FakeConnection):
    PINGED: ClassVar[bool] = False


def make(**options: Any) -> tuple[Admission[FakeConnection], Stats]:
    stats = Stats()
    config = BrokerConfig(port=0, **options)
    return Admission(config, stats, WarningLimiter(None)), stats


def test_admits_and_counts_per_address() -> None:
    """Admitted connections are counted per address, in their handshake until settled."""
    admission, _ = make()
    a, b, c = FakeConnection("10.0.0.1"), FakeConnection("10.0.0.1"), FakeConnection("10.0.0.2")
    assert all(admission.admit(x, 0.0) for x in (a, b, c))
    assert len(admission) == 3
    assert admission.connections_from("10.0.0.1") == (2, 2)
    admission.settled(a)
    admission.settled(a)  # idempotent
    assert admission.connections_from("10.0.0.1") == (2, 1)
    admission.forget(a)
    admission.forget(b)
    admission.forget(b)  # idempotent
    assert admission.connections_from("10.0.0.1") == (0, 0)
    assert admission.connections() == [c]


def test_refuses_past_max_connections_per_ip() -> None:
    """An address at ``max_connections_per_ip`` is refused; another address is not."""
    admission, stats = make(max_connections_per_ip=2, max_handshakes_per_ip=None)
    first = [FakeConnection() for _ in range(2)]
    assert all(admission.admit(x, 0.0) for x in first)
    for x in first:
        admission.settled(x)
    assert not admission.admit(FakeConnection(), 0.0)
    assert admission.admit(FakeConnection("192.0.2.9"), 0.0)
    assert stats.refused == {"per-ip": 1}


def test_past_max_handshakes_per_ip_the_oldest_handshake_of_that_address_goes() -> None:
    """At the per-address handshake cap, that address's oldest handshake is closed, not the
    newcomer, and neither another address's handshake nor an established connection."""
    admission, stats = make(max_handshakes_per_ip=2, max_connections_per_ip=None)
    established, other = FakeConnection(), FakeConnection("192.0.2.9")
    assert admission.admit(established, 0.0)
    admission.settled(established)
    assert admission.admit(other, 0.0)
    first = [FakeConnection() for _ in range(2)]
    assert all(admission.admit(x, 0.0) for x in first)
    newcomer = FakeConnection()
    assert admission.admit(newcomer, 0.0)
    assert first[0].aborted
    assert not any(x.aborted for x in (first[1], newcomer, established, other))
    assert admission.connections_from("192.0.2.1") == (3, 2)
    assert stats.refused == {"handshakes-per-ip": 1}


def test_full_evicts_the_oldest_handshake() -> None:
    """At ``max_connections`` the oldest connection still in its handshake makes room."""
    admission, stats = make(max_connections=2, max_handshakes_per_ip=None)
    old, settled = FakeConnection("10.0.0.1"), FakeConnection("10.0.0.2")
    admission.admit(settled, 0.0)
    admission.settled(settled)
    admission.admit(old, 1.0)
    new = FakeConnection("10.0.0.3")
    assert admission.admit(new, 2.0)
    assert old.aborted
    assert not settled.aborted
    assert admission.connections() == [settled, new]
    assert admission.connections_from("10.0.0.1") == (0, 0)
    assert stats.refused == {"connections-full": 1}


def test_full_of_settled_connections_refuses() -> None:
    """At ``max_connections`` with none in its handshake, the newcomer is refused."""
    admission, stats = make(max_connections=1)
    first = FakeConnection()
    admission.admit(first, 0.0)
    admission.settled(first)
    assert not admission.admit(FakeConnection("10.0.0.9"), 0.0)
    assert not first.aborted
    assert stats.refused == {"connections-full": 1}


def test_sweep_aborts_handshakes_past_the_deadline() -> None:
    """No request within ``handshake_timeout``: aborted; younger or settled ones stay."""
    admission, stats = make(handshake_timeout=5.0)
    late, settled, young = (
        FakeConnection(opened_at=0.0),
        FakeConnection(opened_at=0.0),
        FakeConnection(opened_at=3.0),
    )
    for x in (late, settled, young):
        admission.admit(x, x.opened_at)
    admission.settled(settled)
    admission.sweep(4.9)
    assert not late.aborted
    admission.sweep(5.0)
    assert (late.aborted, settled.aborted, young.aborted) == (True, False, False)
    assert stats.refused == {"handshake-timeout": 1}
    # Aborted, not yet gone: still open, no longer in its handshake.
    assert admission.connections_from(late.ip) == (3, 1)
    admission.sweep(8.0)
    assert young.aborted
    assert stats.refused == {"handshake-timeout": 2}


def test_ping_round_pings_the_active_and_aborts_the_silent() -> None:
    """Each round pings WebSockets read since the last one and aborts the others."""
    admission, _ = make()
    talker, silent, plain, asgi = (FakeConnection(), FakeConnection(), FakeConnection(), Unpinged())
    plain.websocket = False
    for x in (talker, silent, plain, asgi):
        admission.admit(x, 0.0)
    admission.ping(20.0)
    assert (talker.pings, silent.pings, plain.pings, asgi.pings) == (1, 1, 0, 0)
    talker.active = True  # it read something since
    admission.ping(40.0)
    assert talker.pings == 2
    assert not talker.aborted
    assert silent.aborted
    assert not plain.aborted
    assert not asgi.aborted
