"""Who gets /ice (core.ice_access): key, id and token, refusals per address; a fake clock."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from peerpy_server.core.ice_access import (
    FAILURE_BURST,
    UNREACHABLE,
    IceAccess,
    IceRequest,
    Registered,
    Verdict,
)
from peerpy_server.core.limiter import SourceLimiter
from peerpy_server.core.stats import Stats
from peerpy_server.logs import WarningLimiter


class Desk:
    """An IceAccess over a dict of registrations, a hand-moved clock and recorded verdicts."""

    def __init__(self, *, limiter: SourceLimiter | None = None, interval: float = 10.0) -> None:
        self.clock = 0.0
        self.stats = Stats()
        self.registered: dict[str, Registered] = {"alice": "tok-a"}
        self.pending: list[tuple[str, Callable[[Registered], None]]] = []
        self.deferred = False
        self.access = IceAccess(
            "peerjs", self.stats, WarningLimiter(interval), lambda: self.clock, limiter=limiter
        )

    def lookup(self, peer_id: str, answer: Callable[[Registered], None]) -> None:
        if self.deferred:
            self.pending.append((peer_id, answer))
        else:
            answer(self.registered.get(peer_id))

    def ask(
        self,
        peer_id: str = "alice",
        token: str = "tok-a",
        *,
        key: str = "peerjs",
        ip: str = "192.0.2.1",
    ) -> Verdict | None:
        verdicts: list[Verdict] = []
        request = IceRequest(key=key, peer_id=peer_id, token=token, host=None, ip=ip)
        self.access.check(request, self.lookup, verdicts.append)
        assert len(verdicts) <= 1
        return verdicts[0] if verdicts else None


def test_key_id_and_token_must_all_match() -> None:
    """The right key, id and token get 200; a wrong one of any gets 401, counted."""
    desk = Desk()
    assert desk.ask() is Verdict.GRANTED
    assert desk.ask(key="otherkey") is Verdict.REFUSED
    assert desk.ask(token="tok-b") is Verdict.REFUSED
    assert desk.ask(token="") is Verdict.REFUSED
    assert desk.ask(peer_id="bob") is Verdict.REFUSED
    assert desk.ask(peer_id="") is Verdict.REFUSED
    assert desk.stats.refused == {"ice-refused": 5}


def test_refusals_are_limited_per_address_and_refill_with_time() -> None:
    """After the burst of refusals an address gets 429 without a check, even with
    the right token, until its bucket refills; other addresses are not affected."""
    desk = Desk()
    for _ in range(FAILURE_BURST):
        assert desk.ask(token="guess") is Verdict.REFUSED
    assert desk.ask(token="guess") is Verdict.LIMITED
    assert desk.ask() is Verdict.LIMITED  # not even checked
    assert desk.ask(ip="192.0.2.2") is Verdict.GRANTED
    desk.clock += 1.0  # FAILURE_RATE: one more try a second
    assert desk.ask(token="guess") is Verdict.REFUSED
    assert desk.ask() is Verdict.LIMITED
    desk.clock += 1.0
    assert desk.ask() is Verdict.GRANTED
    assert desk.stats.refused == {"ice-refused": FAILURE_BURST + 1, "ice-rate-limit": 3}


def test_granted_requests_never_spend_the_bucket() -> None:
    """Many peers behind one address (a NAT) asking at once all get their servers."""
    desk = Desk()
    assert all(desk.ask() is Verdict.GRANTED for _ in range(10 * FAILURE_BURST))
    assert desk.stats.refused == {}


def test_ipv6_addresses_share_a_bucket_per_64() -> None:
    """An IPv6 host picks any address of its /64: they count as one; mapped IPv4 as IPv4."""
    desk = Desk(limiter=SourceLimiter(rate=1.0, burst=2, max_sources=100, name="ice"))
    assert desk.ask(token="x", ip="2001:db8:1:2::1") is Verdict.REFUSED
    assert desk.ask(token="x", ip="2001:db8:1:2:ffff::9") is Verdict.REFUSED
    assert desk.ask(ip="2001:db8:1:2::77") is Verdict.LIMITED
    assert desk.ask(ip="2001:db8:1:3::1") is Verdict.GRANTED  # another /64
    assert desk.ask(token="x", ip="::ffff:192.0.2.9") is Verdict.REFUSED
    assert desk.ask(token="x", ip="192.0.2.9") is Verdict.REFUSED
    assert desk.ask(ip="192.0.2.9") is Verdict.LIMITED


def test_a_full_table_refuses_new_addresses_while_all_are_active() -> None:
    desk = Desk(limiter=SourceLimiter(rate=1.0, burst=2, max_sources=2, name="ice"))
    assert desk.ask(token="x", ip="192.0.2.1") is Verdict.REFUSED
    assert desk.ask(token="x", ip="192.0.2.2") is Verdict.REFUSED
    assert desk.ask(ip="192.0.2.3") is Verdict.LIMITED
    assert desk.stats.refused["ice-sources-full"] == 1
    desk.clock += 2.0  # both buckets refilled: forgotten, room again
    assert desk.ask(ip="192.0.2.3") is Verdict.GRANTED


def test_checks_in_flight_hold_their_token() -> None:
    """Concurrent checks (cluster lookups under way) are bounded by the bucket too."""
    desk = Desk(limiter=SourceLimiter(rate=1.0, burst=3, max_sources=10, name="ice"))
    desk.deferred = True
    assert [desk.ask(token="guess") for _ in range(4)] == [None, None, None, Verdict.LIMITED]
    for peer_id, answer in desk.pending:
        answer(desk.registered.get(peer_id))
    desk.deferred = False
    assert desk.ask() is Verdict.LIMITED  # the three refusals spent the bucket


def test_an_unreachable_store_is_503_and_not_the_requesters_failure() -> None:
    desk = Desk(limiter=SourceLimiter(rate=1.0, burst=1, max_sources=10, name="ice"))
    desk.registered["alice"] = UNREACHABLE
    assert desk.ask() is Verdict.UNAVAILABLE
    assert desk.ask() is Verdict.UNAVAILABLE  # the token was given back
    assert desk.stats.refused == {"ice-unavailable": 2}


def test_refusals_are_logged_as_rate_limited_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """One WARNING with the id and address, then one per interval, not one per guess."""
    desk = Desk(interval=10.0)
    with caplog.at_level(logging.WARNING, logger="peerpy_server.ice"):
        for _ in range(FAILURE_BURST + 5):
            desk.ask(token="guess", ip="198.51.100.4")
    lines = [r.getMessage() for r in caplog.records if r.name == "peerpy_server.ice"]
    assert len(lines) == 2  # the first refusal, the first 429
    assert "alice" in lines[0]
    assert "198.51.100.4" in lines[0]
    assert "ice-refused" in lines[0]
    assert "ice-rate-limit" in lines[1]
    assert all("guess" not in line for line in lines)  # never the token
