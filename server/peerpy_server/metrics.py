"""What an operator sees: counters kept on the relay path, exported at scrape time.

The relay path only adds to plain integers held by a
:class:`~peerpy_server.core.stats.Stats` (a dict increment per relayed message,
one ``perf_counter`` per read); nothing from ``prometheus_client`` runs per
message.  :class:`BrokerCollector` turns those
integers, and the realm's current sizes, into Prometheus metric families when
``GET <path>metrics`` is scraped; each broker has its own
:class:`~prometheus_client.CollectorRegistry`, so several brokers can live in
one process.

Exported metrics (all prefixed ``peerpy_broker_``):

* ``clients``: registered ids on this instance (gauge);
* ``relayed_messages_total{type}``: OFFER, ANSWER, CANDIDATE, LEAVE, EXPIRE relayed;
* ``queued_messages`` / ``queued_bytes``: messages waiting for offline ids and
  the bytes they are charged (gauges);
* ``expires_total``: EXPIREs sent to senders;
* ``refusals_total{reason}``: connections and messages refused, by reason;
* ``relay_latency_seconds``: from the read of a message to the write of what
  it caused (histogram);
* ``redis_round_trips_total``: commands sent to Redis (cluster mode);
* ``rooms`` / ``room_members``: rooms with a member on this instance, and the
  room memberships of its clients (gauges);
* ``room_refusals_total{reason}``: room joins refused, by ``ROOM-ERROR`` type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .core.stats import LATENCY_BUCKETS, Stats

if TYPE_CHECKING:
    from .core.realm import Realm
    from .core.rooms import Rooms

__all__ = ["BrokerCollector", "render"]

#: ``Content-Type`` of the Prometheus text format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class BrokerCollector(Collector):
    """Builds the metric families from a :class:`Stats` and a realm at scrape time."""

    def __init__(
        self, stats: Stats, realm: Realm, clients: Callable[[], int], *, rooms: Rooms | None = None
    ) -> None:
        self._stats = stats
        self._realm = realm
        self._clients = clients
        self._rooms = rooms

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        prefix = "peerpy_broker_"
        yield GaugeMetricFamily(
            prefix + "clients", "Ids registered on this instance", value=self._clients()
        )
        relayed = CounterMetricFamily(
            prefix + "relayed_messages", "Messages relayed, by type", labels=["type"]
        )
        for kind, count in stats.relayed.items():
            relayed.add_metric([kind.value], count)
        yield relayed
        yield GaugeMetricFamily(
            prefix + "queued_messages",
            "Messages waiting for offline ids",
            value=self._realm.queued_messages,
        )
        yield GaugeMetricFamily(
            prefix + "queued_bytes",
            "Bytes charged to queues (max_queued_bytes)",
            value=self._realm.queued_size,
        )
        yield CounterMetricFamily(
            prefix + "expires", "EXPIREs sent to senders", value=stats.expired
        )
        refused = CounterMetricFamily(
            prefix + "refusals", "Connections and messages refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        bounds = (*LATENCY_BUCKETS, float("inf"))
        for bound, count in zip(bounds, stats.latency_buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            prefix + "relay_latency_seconds",
            "From the read of a message to the write of what it caused",
            buckets=buckets,
            sum_value=stats.latency_sum,
        )
        yield CounterMetricFamily(
            prefix + "redis_round_trips", "Commands sent to Redis", value=stats.redis_round_trips
        )
        rooms = self._rooms
        if rooms is not None:
            yield GaugeMetricFamily(
                prefix + "rooms", "Rooms with a member on this instance", value=rooms.room_count
            )
            yield GaugeMetricFamily(
                prefix + "room_members",
                "Room memberships of the clients on this instance",
                value=rooms.memberships,
            )
        room_refused = CounterMetricFamily(
            prefix + "room_refusals", "Room joins refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(stats.room_refused.items()):
            room_refused.add_metric([reason], count)
        yield room_refused


def render(collector: BrokerCollector) -> bytes:
    """The Prometheus text exposition of ``collector``'s metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
