"""Token buckets per source address in a bounded table: :class:`SourceLimiter`.

Each source (an address, or whatever key the caller picks) gets a bucket of
``burst`` tokens that refills at ``rate`` per second; an action takes one
(:meth:`SourceLimiter.allow`) and is refused when none is left.  The broker's
STUN responder takes one per answer (:mod:`peerpy_server.transports.stun`),
``/ice`` one per check, given back when the check succeeds
(:mod:`peerpy_server.core.ice_access`), so only its failures are limited.

The table is bounded (``max_sources``): a bucket that has refilled carries no
state and is forgotten first; while every tracked source is still active, a
new source is refused until one refills.  Sans-I/O: ``now`` is passed in.
"""

from __future__ import annotations

import itertools

__all__ = ["SourceLimiter"]


class SourceLimiter:
    """Token buckets per source, in a bounded table; sans-I/O (``now`` is passed in).

    Refusals are named ``<name>-rate-limit`` (the source's bucket is empty)
    and ``<name>-sources-full`` (the table is full of active sources), the
    reasons ``/metrics`` counts them under.

    The table is kept in order of last use, so the entries at its front are
    the stalest: a full table first forgets those that have refilled (a full
    bucket is the same as no entry); if the stalest has not, none has, and a
    new source is refused.  Each call costs O(1), amortised.
    """

    __slots__ = ("_buckets", "_burst", "_full", "_idle", "_limited", "_max_sources", "_rate")

    def __init__(self, *, rate: float, burst: int, max_sources: int, name: str) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_sources = max_sources
        self._idle = burst / rate  # seconds after which an untouched bucket is full
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, last use)
        self._limited = f"{name}-rate-limit"
        self._full = f"{name}-sources-full"

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: str, now: float) -> str | None:
        """Take a token for ``source``: ``None`` if it may act, else the refusal reason."""
        buckets = self._buckets
        entry = buckets.pop(source, None)
        if entry is None:
            if len(buckets) >= self._max_sources and not self._forget_idle(now):
                return self._full
            tokens = self._burst
        else:
            tokens = min(self._burst, entry[0] + (now - entry[1]) * self._rate)
        if tokens < 1.0:
            buckets[source] = (tokens, now)
            return self._limited
        buckets[source] = (tokens - 1.0, now)
        return None

    def refund(self, source: str, now: float) -> None:
        """Give back the token an allowed action of ``source`` took (it did not count)."""
        entry = self._buckets.get(source)
        if entry is not None:
            tokens = min(self._burst, entry[0] + (now - entry[1]) * self._rate + 1.0)
            self._buckets[source] = (tokens, now)

    def _forget_idle(self, now: float) -> bool:
        """Drop refilled buckets from the stale end; ``True`` if there is room now."""
        buckets = self._buckets
        deadline = now - self._idle
        for source, (_, last) in list(itertools.islice(buckets.items(), 64)):
            if last > deadline:
                break
            del buckets[source]
        return len(buckets) < self._max_sources
