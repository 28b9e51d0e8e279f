"""The sans-I/O realm, driven with fake links and a hand-moved clock."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from peerpy_server.config import BrokerConfig
from peerpy_server.core.realm import Client, Realm, truncate


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
