"""The broker's counters: plain integers the relay path adds to, read at scrape time.

A :class:`Stats` is updated by the realm, the sessions, the transports and the
cluster (a dict increment per relayed message, one bucket per observed
latency); nothing here knows Prometheus.  :mod:`peerpy_server.metrics` turns
these counters into metric families when ``GET <path>metrics`` is scraped.
"""

from __future__ import annotations

import bisect
from typing import Final

from peerpy_protocol.messages import RelayType

__all__ = ["LATENCY_BUCKETS", "Stats"]

#: Upper bounds (seconds) of the relay latency histogram's buckets.
LATENCY_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


class Stats:
    """Plain counters updated by the realm and the connections (no locks, no labels)."""

    __slots__ = (
        "expired",
        "latency_buckets",
        "latency_count",
        "latency_sum",
        "redis_round_trips",
        "refused",
        "relayed",
        "room_refused",
    )

    def __init__(self) -> None:
        self.relayed: dict[RelayType, int] = dict.fromkeys(RelayType, 0)
        self.expired = 0
        self.refused: dict[str, int] = {}
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_count = 0
        self.latency_sum = 0.0
        self.redis_round_trips = 0
        #: Room joins refused, by ROOM-ERROR type (``room-full``, ``rate-limited``...).
        self.room_refused: dict[str, int] = {}

    def refuse(self, reason: str) -> None:
        """Count one refusal; ``reason`` is a fixed string, never client-chosen text."""
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def observe(self, seconds: float) -> None:
        """Count one relay latency."""
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_count += 1
        self.latency_sum += seconds
