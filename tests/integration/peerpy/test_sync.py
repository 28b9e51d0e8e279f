"""The blocking facade runs the async core on a portal, with the same names."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from peerpy.exceptions import PeerUnavailableError
from peerpy.sync import DataConnection, Peer

from ...helpers.brokers import peerpy_server


@pytest.fixture
def url() -> Iterator[str]:
    """Our broker, running on its own portal thread."""
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(peerpy_server(expire_timeout=1.0)) as broker_url,
    ):
        yield broker_url


def test_sync_chat(url: str, peer_id: str) -> None:
    """Two blocking peers exchange messages; a data handler runs on its own thread."""
    with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:
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


def test_sync_handler_may_call_blocking_methods(url: str, peer_id: str) -> None:
    """A handler runs off the event loop, so it can reply with a blocking send()."""
    with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:
        bob.on("connection", lambda conn: conn.on("data", lambda v: conn.send(v * 2)))
        with alice.connect(bob.id or "") as conn:
            conn.send(21)
            assert conn.recv(timeout=10) == 42


def test_sync_errors_are_the_same(url: str, peer_id: str) -> None:
    """Errors raise as in the async API."""
    with Peer(peer_id, server=url) as peer, pytest.raises(PeerUnavailableError):
        peer.connect("nobody" + peer_id)


def test_sync_iteration_ends_on_close(url: str, peer_id: str) -> None:
    """Iterating a connection ends when the remote closes it."""
    with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:
        conn = alice.connect(bob.id or "", reliable=True)
        incoming = bob.accept(timeout=10)
        for i in range(3):
            conn.send(i)
        conn.close(flush=True)
        assert list(incoming) == [0, 1, 2]


def test_sync_call(url: str, peer_id: str) -> None:
    """A blocking call: the callee answers, both see the other's stream, hang-up propagates."""
    from peerpy.media import PatternVideoTrack, ToneAudioTrack

    with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:
        bob.on("call", lambda call: call.answer([PatternVideoTrack(width=64, height=48)]))
        call = alice.call(bob.id or "", [ToneAudioTrack()], receive=["video"])
        stream = call.wait_stream(timeout=15)
        assert stream.video is not None
        call.close()
        assert call.closed


def test_sync_data_handler_registered_late_misses_nothing(url: str, peer_id: str) -> None:
    """A data handler registered inside a slow connection handler gets every message, in order."""
    count = 200
    with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:
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
