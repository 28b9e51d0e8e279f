"""peerpy.keepalive: when HEARTBEATs and pings go, when the broker counts as gone (fake clock)."""

from __future__ import annotations

import itertools
import math

import pytest

from peerpy.keepalive import CHECK_EVERY, Keepalive, Tick


def run(
    keepalive: Keepalive, until: float, pong_after: float | None, silent_from: float = math.inf
) -> list[tuple[float, Tick]]:
    """Wake the keepalive when it asks until ``until``; each ping's pong arrives
    ``pong_after`` s later (``None``: never; none for a ping from ``silent_from``).
    Returns each wake and its tick."""
    log = []
    pong_due: float | None = None
    now = 0.0
    while True:
        now = keepalive.next_wake()
        if pong_due is not None and pong_due <= now:
            keepalive.ponged(pong_due)
            pong_due = None
        if now > until:
            return log
        tick = keepalive.tick(now)
        log.append((now, tick))
        if tick.gone:
            return log
        if tick.ping and pong_after is not None and now < silent_from:
            pong_due = now + pong_after


def test_heartbeats_pings_and_address_checks_go_on_schedule() -> None:
    """HEARTBEAT every `heartbeat`, a ping every `gone_after` / 2, an address check each second."""
    keepalive = Keepalive(heartbeat=5.0, gone_after=4.0, now=0.0)
    log = run(keepalive, until=20.0, pong_after=0.01)
    assert [t for t, tick in log if tick.heartbeat] == [5.0, 10.0, 15.0, 20.0]
    pings = [t for t, tick in log if tick.ping]
    assert pings[0] == 2.0
    assert all(2.0 <= b - a <= 2.02 for a, b in itertools.pairwise(pings))
    assert len(pings) == 9
    checks = [t for t, tick in log if tick.check]
    assert checks == [float(n) for n in range(1, 21)]
    assert not any(tick.gone for _, tick in log)


def test_a_pong_that_never_comes_makes_the_broker_gone_after_gone_after() -> None:
    """No pong: gone exactly gone_after after the ping, so within 1.5 x gone_after of silence."""
    keepalive = Keepalive(heartbeat=5.0, gone_after=4.0, now=0.0)
    log = run(keepalive, until=60.0, pong_after=None)
    when, last = log[-1]
    assert last.gone is not None
    assert "no ping for 4.0 s" in last.gone
    assert when == 6.0  # the ping at 2 s, its deadline at 6 s
    assert sum(tick.ping for _, tick in log) == 1  # one ping at a time


def test_a_slow_pong_within_the_bound_is_not_gone() -> None:
    """A pong 3.9 s late with gone_after 4 s keeps the broker alive; the next ping waits for it."""
    keepalive = Keepalive(heartbeat=5.0, gone_after=4.0, now=0.0)
    log = run(keepalive, until=30.0, pong_after=3.9)
    assert not any(tick.gone for _, tick in log)
    pings = [t for t, tick in log if tick.ping]
    assert all(b - a == pytest.approx(5.9) for a, b in itertools.pairwise(pings))


def test_the_broker_goes_silent_after_answering() -> None:
    """Pongs until 10 s, then none: gone at most 1.5 x gone_after after the silence began."""
    keepalive = Keepalive(heartbeat=5.0, gone_after=4.0, now=0.0)
    now, tick = run(keepalive, until=60.0, pong_after=0.05, silent_from=10.0)[-1]
    assert tick.gone is not None
    assert 10.0 < now <= 10.0 + 1.5 * 4.0 + 0.05


def test_without_a_bound_only_heartbeats_go() -> None:
    """gone_after None: no pings, no address checks (websockets' keepalive watches instead)."""
    keepalive = Keepalive(heartbeat=5.0, gone_after=None, now=100.0)
    log = run(keepalive, until=130.0, pong_after=None)
    assert [t for t, _ in log] == [105.0, 110.0, 115.0, 120.0, 125.0, 130.0]
    assert all(tick == Tick(heartbeat=True) for _, tick in log)


def test_each_wake_is_due_for_something() -> None:
    """next_wake() never wakes the loop for nothing, and never later than the next address check."""
    keepalive = Keepalive(heartbeat=5.0, gone_after=4.0, now=0.0)
    last = 0.0
    for now, tick in run(keepalive, until=30.0, pong_after=0.5):
        assert tick.heartbeat or tick.ping or tick.check or tick.gone
        assert now - last <= CHECK_EVERY
        last = now
