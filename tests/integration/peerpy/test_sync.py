"""The blocking facade (peerpy.sync) runs the async core on a portal, with the same names.

Its API matches the async one (issue 13); examples/chat.py, built on it, keeps lines in order.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from peerpy import sync
from peerpy.blocking import ASYNC_ONLY
from peerpy.dataconnection import DataConnection as AsyncDataConnection
from peerpy.exceptions import PeerUnavailableError, UsageError
from peerpy.mediaconnection import MediaStream
from peerpy.sync import DataConnection, Peer

from ...helpers.brokers import ROOT, peerpy_server


def test_sync_chat(sync_url: str, peer_id: str) -> None:
    """Two blocking peers exchange messages; a data handler runs on its own thread."""
    with Peer(peer_id + "a", server=sync_url) as alice, Peer(peer_id + "b", server=sync_url) as bob:
        seen: list[str] = []
        got_two = threading.Event()

        def on_data(value: str) -> None:
            seen.append(value)
            if len(seen) == 2:
                got_two.set()

        with alice.connect(bob.id or "", reliable=True) as conn:
            incoming = bob.accept(timeout=10)
            incoming.on("data", on_data)
            conn.send("hello")
            conn.send("world")
            assert got_two.wait(10)
            assert seen == ["hello", "world"]
            assert incoming.label == conn.connection_id


def test_sync_handler_may_call_blocking_methods(sync_url: str, peer_id: str) -> None:
    """A handler runs off the event loop, so it can reply with a blocking send()."""
    with Peer(peer_id + "a", server=sync_url) as alice, Peer(peer_id + "b", server=sync_url) as bob:
        bob.on("connection", lambda conn: conn.on("data", lambda v: conn.send(v * 2)))
        with alice.connect(bob.id or "") as conn:
            conn.send(21)
            assert conn.recv(timeout=10) == 42


def test_sync_errors_are_the_same(sync_url: str, peer_id: str) -> None:
    """Errors raise as in the async API."""
    with Peer(peer_id, server=sync_url) as peer, pytest.raises(PeerUnavailableError):
        peer.connect("nobody" + peer_id)


def test_sync_iteration_ends_on_close(sync_url: str, peer_id: str) -> None:
    """Iterating a connection ends when the remote closes it."""
    with Peer(peer_id + "a", server=sync_url) as alice, Peer(peer_id + "b", server=sync_url) as bob:
        conn = alice.connect(bob.id or "", reliable=True)
        incoming = bob.accept(timeout=10)
        for i in range(3):
            conn.send(i)
        conn.close(flush=True)
        assert list(incoming) == [0, 1, 2]


def test_sync_call(sync_url: str, peer_id: str) -> None:
    """A blocking call: the callee answers, both see the other's stream, hang-up propagates."""
    from peerpy.media import PatternVideoTrack, ToneAudioTrack

    with Peer(peer_id + "a", server=sync_url) as alice, Peer(peer_id + "b", server=sync_url) as bob:
        bob.on("call", lambda call: call.answer([PatternVideoTrack(width=64, height=48)]))
        call = alice.call(bob.id or "", [ToneAudioTrack()], receive=["video"])
        stream = call.wait_stream(timeout=15)
        assert stream.video is not None
        call.close()
        assert call.closed


def test_sync_data_handler_registered_late_misses_nothing(sync_url: str, peer_id: str) -> None:
    """A data handler registered inside a slow connection handler gets every message, in order."""
    count = 200
    with Peer(peer_id + "a", server=sync_url) as alice, Peer(peer_id + "b", server=sync_url) as bob:
        got: list[int] = []
        all_in = threading.Event()

        def on_data(value: int) -> None:
            got.append(value)
            if len(got) == count:
                all_in.set()

        def on_connection(conn: DataConnection) -> None:
            time.sleep(0.5)  # the messages arrive meanwhile
            conn.on("data", on_data)

        bob.on("connection", on_connection)
        with alice.connect(bob.id or "", reliable=True) as conn:
            for i in range(count):
                conn.send(i)
            assert all_in.wait(15), f"{len(got)} of {count} messages reached the handler"
            time.sleep(0.2)
            assert got == list(range(count))


@pytest.mark.anyio
async def test_async_data_handler_registered_late_misses_nothing(peer_id: str) -> None:
    """The async API too: a data handler registered after an await in a connection handler."""
    import anyio

    from peerpy import Peer as AsyncPeer

    count = 200
    got: list[int] = []
    async with (
        peerpy_server() as broker_url,
        AsyncPeer(peer_id + "a", server=broker_url) as alice,
        AsyncPeer(peer_id + "b", server=broker_url) as bob,
    ):

        async def on_connection(conn: Any) -> None:
            await anyio.sleep(0.5)  # the messages arrive meanwhile
            conn.on("data", got.append)

        bob.on("connection", on_connection)
        conn = await alice.connect(bob.id or "", reliable=True)
        for i in range(count):
            await conn.send(i)
        with anyio.fail_after(15):
            while len(got) < count:  # noqa: ASYNC110 - the handler fills it
                await anyio.sleep(0.05)
        await anyio.sleep(0.2)
        assert got == list(range(count))


# -- the same API as the async Peer (issue 13) ---------------------------------


def test_sync_facade_matches_the_async_api(sync_url: str, peer_id: str) -> None:
    """off, connections, get_connection, disconnected, token; handlers before start()."""
    alice = sync.Peer(peer_id + "a", server=sync_url)
    opened: list[str] = []
    dropped: list[str] = []
    alice.on("open", opened.append)
    alice.on("open", dropped.append)
    alice.off("open", dropped.append)
    assert alice.disconnected
    assert alice.token is None
    assert alice.connections == []
    with pytest.raises(UsageError, match="unknown event"):
        alice.on("opne", opened.append)  # type: ignore[arg-type]
    alice.start()
    try:
        deadline = time.monotonic() + 10
        while not opened and time.monotonic() < deadline:
            time.sleep(0.01)
        assert opened == [peer_id + "a"]
        assert dropped == []
        assert not alice.disconnected
        assert alice.token
        with sync.Peer(peer_id + "b", server=sync_url) as bob:
            conn = alice.connect(peer_id + "b", reliable=True)
            incoming = bob.accept(timeout=15)
            assert alice.connections == [conn]
            assert alice.get_connection(peer_id + "b", conn.connection_id) is conn
            assert alice.get_connection(peer_id + "b", "dc_nope") is None
            seen: list[Any] = []
            incoming.on("data", seen.append)
            incoming.off("data", seen.append)
            conn.send("unheard")
            assert incoming.recv(timeout=10) == "unheard"
            assert seen == []
            # No attribute hands back an un-awaited coroutine.
            for name, _ in inspect.getmembers(AsyncDataConnection, inspect.iscoroutinefunction):
                if not name.startswith("_") and name not in ASYNC_ONLY:  # deliver, run: plumbing
                    assert not inspect.iscoroutinefunction(getattr(conn, name)), name
            assert conn.wait_open() is None  # blocks until open (it is): no coroutine
            conn.close()
    finally:
        alice.close()


# -- the same names as the async API (issue 23) -----------------------------------

#: Names only the blocking Peer has: it is started and stopped without ``async with``.
SYNC_ONLY = {"start": "the blocking spelling of `with Peer(...)`", "close": "of aclose()"}


def public_names(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def unwrap(value: Any) -> Any:
    """What a twin stands for: the async connection, a stream's id and tracks."""
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    if isinstance(value, MediaStream):
        return (value.id, value.tracks)
    return getattr(value, "_conn", value)


def test_sync_classes_have_the_async_public_names(sync_url: str, peer_id: str) -> None:
    """Peer, DataConnection and MediaConnection of peerpy.sync have every public name of
    their async twins, on live objects (instance attributes included), and nothing else,
    but for the names listed with a reason (ASYNC_ONLY, SYNC_ONLY)."""
    from peerpy.media import ToneAudioTrack

    with Peer(peer_id + "a", server=sync_url) as alice, Peer(peer_id + "b", server=sync_url) as bob:
        bob.on("call", lambda call: call.answer())
        conn = alice.connect(bob.id or "")
        call = alice.call(bob.id or "", [ToneAudioTrack()])
        pairs = [(alice, alice._peer), (conn, conn._conn), (call, call._conn)]
        for twin, original in pairs:
            missing = public_names(original) - public_names(twin) - set(ASYNC_ONLY)
            extra = public_names(twin) - public_names(original) - set(SYNC_ONLY)
            assert (missing, extra) == (set(), set()), type(original).__name__
            for name in public_names(original) & public_names(twin):
                if not callable(getattr(original, name)):
                    assert unwrap(getattr(twin, name)) == unwrap(getattr(original, name)), name
        # Every listed exception is a real difference, not a stale entry.
        assert set(ASYNC_ONLY) <= set().union(*(public_names(o) for _, o in pairs))
        assert set(SYNC_ONLY) <= public_names(alice) - public_names(alice._peer)
        assert alice.half_open_connections() == []
        assert alice.backend in ("aiortc", "wrtc")


def test_sync_peer_settings_are_there_before_start(peer_id: str) -> None:
    """The async peer is made with the blocking one: a bad argument raises at once, and
    backend, timeouts, servers... can be read before start()."""
    from peerpy import Timeouts
    from peerpy.exceptions import InvalidIdError

    with pytest.raises(InvalidIdError):
        Peer("not an id!")
    peer = Peer(peer_id, server="http://127.0.0.1:9/x/", timeouts=Timeouts(open=1))
    assert peer.timeouts.open == 1
    assert peer.server.base_url == "http://127.0.0.1:9/x/"
    assert peer.backend in ("aiortc", "wrtc")
    assert peer.half_open_connections() == peer.connections == []


def test_peerjs_readme_ported_line_by_line_sync(sync_url: str, peer_id: str) -> None:
    """PeerJS's README example with the blocking facade: ``open`` handlers registered
    on an open peer and an open connection run at once, on the dispatcher thread."""
    heard: list[str] = []
    got = threading.Event()
    opened: list[str] = []
    with Peer(peer_id + "b", server=sync_url) as other:
        # peer.on('connection', function(conn) { conn.on('data', function(data){ ... }) })
        other.on("connection", lambda conn: conn.on("data", lambda d: (heard.append(d), got.set())))
        with Peer(peer_id, server=sync_url) as peer:  # var peer = new Peer('pick-an-id');
            peer.on("open", opened.append)  # peer.on('open', function(id) { ... })
            conn = peer.connect(peer_id + "b")  # var conn = peer.connect('another-peers-id');
            conn.on("open", lambda: conn.send("hi!"))  # conn.on('open', () => conn.send('hi!'))
            assert got.wait(10)
    assert heard == ["hi!"]
    assert opened == [peer_id]


def test_sync_media_frames_are_read_blocking(sync_url: str, peer_id: str, tmp_path: Path) -> None:
    """peerpy.sync's FrameCounter counts a call's frames and Recorder writes them, both
    blocking, on the peer's loop; raw tracks need the peer."""
    from peerpy.media import PatternVideoTrack

    with Peer(peer_id + "a", server=sync_url) as alice, Peer(peer_id + "b", server=sync_url) as bob:
        bob.on("call", lambda call: call.answer([PatternVideoTrack(width=64, height=48)]))
        call = alice.call(bob.id or "", receive=["video"])
        stream = call.wait_stream(timeout=15)
        assert stream is call.remote_stream
        assert isinstance(stream, sync.MediaStream)
        with sync.FrameCounter(stream) as counter:
            counter.wait(video=5, timeout=10)
            assert counter.counts["video"] >= 5
            assert counter.last["video"].width == 64
            with pytest.raises(TimeoutError):
                counter.wait(video=10_000, timeout=0.2)
        with pytest.raises(UsageError, match="or the peer"):
            sync.FrameCounter([stream.video])  # type: ignore[list-item]
        with sync.FrameCounter([stream.video], peer=alice) as counter:  # type: ignore[list-item]
            counter.wait(video=2, timeout=10)
        path = tmp_path / "call.mp4"
        with sync.Recorder(path, stream):
            time.sleep(0.5)
        assert path.stat().st_size > 1000
        call.close()


# -- the chat example ----------------------------------------------------------


def test_chat_example_keeps_lines_in_order(sync_url: str, peer_id: str, tmp_path: Path) -> None:
    """examples/chat.py connects reliably (ordered): 300 lines arrive in order."""
    lines = [f"line {n}" for n in range(300)]
    script = str(ROOT / "examples" / "chat.py")
    env_url = sync_url
    out = (tmp_path / "alice.out").open("wb")
    alice = subprocess.Popen(
        [sys.executable, script, peer_id + "a"],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "PEERPY_SERVER": env_url},
    )
    bob = None
    try:
        time.sleep(1)
        bob = subprocess.Popen(
            [sys.executable, script, peer_id + "b", peer_id + "a"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**__import__("os").environ, "PEERPY_SERVER": env_url},
        )
        assert bob.stdin is not None
        bob.stdin.write(("\n".join(lines) + "\n").encode())
        bob.stdin.flush()
        deadline = time.monotonic() + 60
        expected = [f"{peer_id}b: {line}" for line in lines]
        while time.monotonic() < deadline:
            got = (tmp_path / "alice.out").read_text().splitlines()
            if len(got) >= len(lines):
                break
            time.sleep(0.1)
        assert got == expected
    finally:
        for process in (bob, alice):
            if process is not None:
                process.kill()
                process.wait(10)
                if process.stdin is not None:
                    process.stdin.close()
        out.close()
    source = (ROOT / "examples" / "chat.py").read_text()
    assert "reliable=True" in source
