"""The sans-I/O realm (core.realm), driven with fake links and a hand-moved clock.

Its rules (registration, takeover, expiry, queues), its public accessors, and
the sweep and queue accounting under abuse (issue 9: 100 000 queues expiring).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from peerpy_server.config import BrokerConfig
from peerpy_server.core.realm import Client, Realm, truncate

from .fakes import FakeHost, FakeSession


class FakeLink:
    """Records frames and closes; ``capacity`` frames are accepted before it is "cut off"."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str] | None = None
        self.capacity = capacity

    def send(self, frame: str) -> bool:
        if len(self.frames) >= self.capacity:
            return False
        self.frames.append(json.loads(frame))
        return True

    def close(self, code: int | None = None, reason: str = "") -> None:
        self.closed = (code, reason)


def make(**options: Any) -> Realm:
    return Realm(BrokerConfig(port=0, **options))


def join(realm: Realm, peer_id: str, token: str = "t", now: float = 0.0, **kw: Any) -> Client:
    client = realm.connect(FakeLink(**kw), key="peerjs", peer_id=peer_id, token=token, now=now)
    assert client is not None
    return client


def frames(client: Client) -> list[dict[str, Any]]:
    link = client.link
    assert isinstance(link, FakeLink)
    return link.frames


def test_register_sends_open() -> None:
    """A new id is registered and gets OPEN."""
    realm = make()
    alice = join(realm, "alice")
    assert frames(alice) == [{"type": "OPEN"}]
    assert "alice" in realm
    assert len(realm) == 1


def test_checks_run_in_peer_order() -> None:
    """Missing params are reported before a bad key, a bad key before the id rule."""
    realm = make()
    link = FakeLink()
    assert realm.connect(link, key="bad", peer_id="", token="t", now=0) is None
    assert link.frames[0]["payload"]["msg"].startswith("No id, token, or key")
    assert link.closed == (None, "")
    link = FakeLink()
    assert realm.connect(link, key="bad", peer_id="x!", token="t", now=0) is None
    assert link.frames[0]["payload"]["msg"] == "Invalid key provided"


def test_takeover_modes() -> None:
    """Same-token takeover: OPEN and old link closed by default; silent swap in peer mode."""
    realm = make()
    old = join(realm, "bob")
    new = join(realm, "bob", now=1.0)
    assert frames(new) == [{"type": "OPEN"}]
    assert old.link.closed is not None  # type: ignore[attr-defined]
    realm.disconnect(old)  # the old socket closing later does not unregister bob
    assert "bob" in realm

    quiet = make(open_on_takeover=False)
    old = join(quiet, "bob")
    new = join(quiet, "bob", now=1.0)
    assert frames(new) == []
    assert old.link.closed is None  # type: ignore[attr-defined]
    assert new.last_ping == 0.0


def test_heartbeat_keeps_alive_and_sweep_drops_the_rest() -> None:
    """Only HEARTBEAT refreshes liveness; the sweep drops late clients and their queues."""
    realm = make(alive_timeout=10.0)
    quiet = join(realm, "quiet", now=0)
    busy = join(realm, "busy", now=0)
    realm.receive(busy, b'{"type":"HEARTBEAT"}', now=8)
    realm.receive(quiet, b'{"type":"CANDIDATE","dst":"ghost","payload":1}', now=8)
    realm.receive(busy, b'{"type":"CANDIDATE","dst":"quiet","payload":1}', now=9)
    realm.sweep(now=10)
    assert realm.ids() == ["busy"]
    assert quiet.link.closed == (None, "")  # type: ignore[attr-defined]
    assert realm.queued("quiet") == 0
    realm.sweep(now=17.9)
    assert "busy" in realm
    realm.sweep(now=18)
    assert len(realm) == 0


def test_expire_once_per_sender_after_timeout() -> None:
    """A queue older than expire_timeout gives each distinct sender one EXPIRE."""
    realm = make(expire_timeout=5.0)
    alice, bob = join(realm, "alice"), join(realm, "bob")
    for _ in range(3):
        realm.receive(alice, b'{"type":"OFFER","dst":"carol","payload":1}', now=1)
    realm.receive(bob, b'{"type":"CANDIDATE","dst":"carol","payload":1}', now=2)
    realm.sweep(now=5.9)
    assert frames(alice)[1:] == []
    realm.sweep(now=6)
    assert frames(alice)[1:] == [{"type": "EXPIRE", "src": "carol", "dst": "alice"}]
    assert frames(bob)[1:] == [{"type": "EXPIRE", "src": "carol", "dst": "bob"}]
    assert realm.queued_size == 0


def test_queue_flush_on_connect_in_order() -> None:
    """Queued messages follow OPEN in FIFO order and the queue is gone."""
    realm = make()
    alice = join(realm, "alice")
    for i in range(3):
        realm.receive(alice, json.dumps({"type": "CANDIDATE", "dst": "bob", "payload": i}), 0)
    bob = join(realm, "bob")
    assert [f.get("payload") for f in frames(bob)] == [None, 0, 1, 2]
    assert realm.queued("bob") == 0


def test_queue_bounds() -> None:
    """Per-id count and size and the global size bound the queues."""
    realm = make(max_queue_bytes=250, max_queued_bytes=10_000)
    alice = join(realm, "alice")
    for _ in range(10):
        realm.receive(alice, json.dumps({"type": "OFFER", "dst": "x", "payload": "p" * 50}), 0)
    assert realm.queued("x") == 2  # max_queue_bytes counts characters of JSON
    assert realm.queued_size <= 10_000  # max_queued_bytes counts memory
    other = make(max_queued_bytes=300)
    carol = join(other, "carol")
    for i in range(10):
        other.receive(carol, json.dumps({"type": "OFFER", "dst": f"d{i}", "payload": "p" * 50}), 0)
    assert other.queued_size <= 300
    assert other.queued("d3") == 0


def test_overflowing_destination_is_dropped_and_sender_gets_leave() -> None:
    """When a send cuts the destination off, it is unregistered and the sender gets LEAVE."""
    realm = make()
    alice = join(realm, "alice")
    bob = join(realm, "bob", capacity=1)  # room for OPEN only
    realm.receive(alice, b'{"type":"ANSWER","dst":"bob","payload":1}', 0)
    assert "bob" not in realm
    assert bob.link.closed == (None, "")  # type: ignore[attr-defined]
    assert frames(alice)[-1] == {"type": "LEAVE", "src": "bob", "dst": "alice"}


def test_truncate_shortens_long_payloads() -> None:
    """Log payloads are cut to the limit with the original length noted."""
    assert truncate("abc") == "abc"
    assert truncate("x" * 500, 10) == "xxxxxxxxxx…(500 chars)"


def test_realm_imports_no_io_library() -> None:
    """The realm is sans-I/O: importing it pulls in neither asyncio's server nor websockets."""
    code = (
        "import sys, peerpy_server.core.realm\n"
        "bad = [m for m in ('websockets', 'anyio', 'aiortc', 'uvloop') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- public accessors ------------------------------------------------------


def test_client_and_clients_read_the_registry() -> None:
    """``client(id)`` is the registered record; ``clients()`` lists them oldest HEARTBEAT first."""
    host = FakeHost()
    realm = host.realm
    sessions = {}
    for peer_id in ("alice", "bob"):
        sessions[peer_id] = session = FakeSession(host)
        session.register(f"key=peerjs&id={peer_id}&token=t")
    alice = realm.client("alice")
    assert alice is not None
    assert (alice.id, alice.token, alice.link) == ("alice", "t", sessions["alice"])
    assert realm.client("carol") is None
    assert [c.id for c in realm.clients()] == ["alice", "bob"]
    realm.receive(alice, '{"type":"HEARTBEAT"}', 1.0)
    assert [c.id for c in realm.clients()] == ["bob", "alice"]


def test_clients_of_an_empty_realm() -> None:
    """No registration: no record."""
    realm = Realm(BrokerConfig(port=0))
    assert list(realm.clients()) == []


# -- under abuse (issue 9, "The broker under abuse") ------------------------


class CountingLink:
    """Counts frames; never cut off."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, frame: str) -> bool:
        self.sent += 1
        return True

    def close(self, code: int | None = None, reason: str = "") -> None:
        pass


def flood_realm(n: int, **options: Any) -> tuple[Realm, CountingLink]:
    """A realm where one client queued one OFFER for each of ``n`` distinct offline ids at t=0."""
    options.setdefault("max_queues", None)
    options.setdefault("max_queues_per_sender", None)
    options.setdefault("max_queued_bytes", 1 << 40)
    realm = Realm(BrokerConfig(port=0, warning_interval=None, **options))
    link = CountingLink()
    client = realm.connect(link, key="peerjs", peer_id="flooder", token="t", now=0.0)
    assert client is not None
    for i in range(n):
        realm.receive(client, b'{"type":"OFFER","dst":"g%d","payload":1}' % i, 0.0)
    return realm, link


# -- the sweep ---------------------------------------------------------------


def test_sweep_cost_is_linear_in_what_expires() -> None:
    """Expiring 4x as many queues costs about 4x the CPU time, not 16x (was quadratic)."""
    costs = {}
    for n in (25_000, 100_000):
        realm, link = flood_realm(n)
        start = time.process_time()
        assert realm.sweep(10.0) is False
        costs[n] = time.process_time() - start
        assert link.sent == 1 + n  # OPEN, then one EXPIRE per queue
        assert realm.queued_size == 0
        assert realm.queue_count == 0
        del realm, link
        gc.collect()
    ratio = costs[100_000] / max(costs[25_000], 1e-3)
    assert ratio < 8, f"sweep of 100k took {ratio:.1f}x the time of 25k: {costs}"


def test_sweep_works_in_bounded_slices() -> None:
    """sweep(now, limit) handles at most ``limit`` entries and says whether more are due."""
    realm, link = flood_realm(5_000)
    slices = 0
    while realm.sweep(10.0, 1000):
        slices += 1
        assert link.sent == 1 + 1000 * slices
    assert slices == 4
    assert link.sent == 1 + 5_000
    assert realm.sweep(10.0, 1000) is False


def test_flushed_queue_is_swept_once_and_sender_gets_no_expire() -> None:
    """A queue delivered early leaves only its overhead charged until its expiry slot passes."""
    realm, link = flood_realm(3)
    charged = realm.queued_size
    bob_link = CountingLink()
    assert realm.connect(bob_link, key="peerjs", peer_id="g1", token="t", now=1.0) is not None
    assert bob_link.sent == 2  # OPEN and the queued OFFER
    assert 0 < realm.queued_size < charged
    assert realm.queue_count == 3
    realm.sweep(10.0)
    assert link.sent == 1 + 2  # EXPIRE for g0 and g2 only
    assert realm.queued_size == 0
    assert realm.queue_count == 0


# -- queue memory ------------------------------------------------------------


def test_queue_accounting_covers_measured_memory() -> None:
    """The bytes charged for queues are at least what tracemalloc sees them take, at most 2x."""
    config = BrokerConfig(port=0, max_queues=None, max_queues_per_sender=None)
    realm = Realm(config)
    senders = [
        realm.connect(CountingLink(), key="peerjs", peer_id=f"s{i}", token="t", now=0.0)
        for i in range(2)
    ]
    frames = [b'{"type":"OFFER","dst":"g%d","payload":"%d"}' % (i, i) for i in range(5_000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for sender in senders:
            assert sender is not None
            for frame in frames:  # a queue, then a second message and sender on it
                realm.receive(sender, frame, 0.0)
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert realm.queued("g7") == 2
    assert traced <= realm.queued_size <= 2 * traced, (traced, realm.queued_size)


def test_sender_cap_and_total_cap_answer_expire_at_once() -> None:
    """Past max_queues_per_sender (or max_queues) a message is not queued; EXPIRE comes at once."""
    realm = Realm(BrokerConfig(port=0, max_queues_per_sender=3, max_queues=5))
    links = [CountingLink(), CountingLink()]
    alice, bob = (
        realm.connect(link, key="peerjs", peer_id=name, token="t", now=0.0)
        for link, name in zip(links, ("alice", "bob"), strict=False)
    )
    assert alice is not None
    assert bob is not None
    for i in range(4):
        realm.receive(alice, b'{"type":"OFFER","dst":"x%d","payload":1}' % i, 0.0)
    assert links[0].sent == 1 + 1  # OPEN, then EXPIRE for x3 at once
    assert [realm.queued(f"x{i}") for i in range(4)] == [1, 1, 1, 0]
    realm.receive(alice, b'{"type":"CANDIDATE","dst":"x0","payload":2}', 0.0)
    assert realm.queued("x0") == 2  # an id it already queues for is fine
    for i in range(3):
        realm.receive(bob, b'{"type":"OFFER","dst":"y%d","payload":1}' % i, 0.0)
    assert links[1].sent == 1 + 1  # y2 would be the sixth queue
    assert realm.queue_count == 5
