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
from peerpy.dataconnection import DataConnection as AsyncDataConnection
from peerpy.exceptions import PeerUnavailableError, UsageError
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
                if not name.startswith("_"):
                    assert not inspect.iscoroutinefunction(getattr(conn, name)), name
            assert conn.wait_open() is None  # blocks until open (it is): no coroutine
            conn.close()
    finally:
        alice.close()


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
