"""Per-source token buckets (STUN answers, /ice failures), on a fake clock (sans-I/O)."""

from __future__ import annotations

import functools

from peerpy_server.core.limiter import SourceLimiter

StunLimiter = functools.partial(SourceLimiter, name="stun")


def test_a_source_gets_its_burst_then_the_rate() -> None:
    """burst answers at once, then one per 1/rate seconds."""
    limiter = StunLimiter(rate=10.0, burst=5, max_sources=100)
    assert [limiter.allow("a", 0.0) for _ in range(6)] == [None] * 5 + ["stun-rate-limit"]
    assert limiter.allow("a", 0.05) == "stun-rate-limit"  # half a token back
    assert limiter.allow("a", 0.1) is None  # one token back
    assert limiter.allow("a", 0.1) == "stun-rate-limit"
    assert limiter.allow("b", 0.1) is None  # another source has its own bucket


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    limiter = StunLimiter(rate=10.0, burst=3, max_sources=100)
    assert limiter.allow("a", 0.0) is None
    answered = [limiter.allow("a", 1000.0) for _ in range(5)]
    assert answered == [None] * 3 + ["stun-rate-limit"] * 2


def test_the_table_is_bounded_and_forgets_refilled_sources_first() -> None:
    """A full table drops sources whose bucket refilled; while all are active, a new one waits."""
    limiter = StunLimiter(rate=10.0, burst=5, max_sources=3)
    for source in ("a", "b", "c"):
        assert limiter.allow(source, 0.0) is None
    assert limiter.allow("d", 0.1) == "stun-sources-full"  # a, b, c still refilling
    assert len(limiter) == 3
    assert limiter.allow("b", 0.4) is None  # b used again: now the freshest
    # At 0.5 s a and c are full again (5 tokens at 10/s): forgotten, d gets in.
    assert limiter.allow("d", 0.5) is None
    assert len(limiter) == 2
    assert limiter.allow("e", 0.5) is None
    assert limiter.allow("f", 0.5) == "stun-sources-full"  # b, d, e all active
    assert len(limiter) == 3


def test_a_forgotten_source_starts_from_a_full_bucket_only() -> None:
    """Forgetting only refilled buckets never gives a limited source more than its burst."""
    limiter = StunLimiter(rate=1.0, burst=2, max_sources=2)
    assert limiter.allow("victim", 0.0) is None
    assert limiter.allow("victim", 0.0) is None
    assert limiter.allow("victim", 0.0) == "stun-rate-limit"
    assert limiter.allow("x", 0.0) is None
    assert limiter.allow("y", 0.5) == "stun-sources-full"  # victim's bucket is not full
    assert limiter.allow("victim", 0.5) == "stun-rate-limit"


def test_a_refund_gives_back_the_token_of_an_action_that_did_not_count() -> None:
    """allow then refund costs nothing: only the actions not refunded drain the bucket."""
    limiter = SourceLimiter(rate=1.0, burst=2, max_sources=10, name="ice")
    for _ in range(100):
        assert limiter.allow("a", 0.0) is None
        limiter.refund("a", 0.0)
    assert limiter.allow("a", 0.0) is None  # two not refunded: the burst
    assert limiter.allow("a", 0.0) is None
    assert limiter.allow("a", 0.0) == "ice-rate-limit"
    limiter.refund("a", 0.0)  # a refund never lifts the bucket past its burst
    limiter.refund("a", 0.0)
    limiter.refund("a", 0.0)
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [None, None, "ice-rate-limit"]
    limiter.refund("nobody", 0.0)  # an unknown source: nothing to give back
    assert len(limiter) == 1
