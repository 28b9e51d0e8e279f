"""Rooms (peerpy.room) between real peers on the real broker: each bullet of the API.

Members are real aiortc peers on our broker on 127.0.0.1; the crash cases
kill or freeze a real member process; the capability case runs against the
real ``peer`` 1.0.2, which has no rooms.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from peerpy_server import Broker, BrokerConfig
from websockets.asyncio.client import connect

from peerpy.config import Timeouts
from peerpy.dataconnection import DataConnection
from peerpy.exceptions import (
    ConnectionClosedError,
    NegotiationFailedError,
    NotOpenError,
    RoomFullError,
    RoomsUnsupportedError,
    UsageError,
)
from peerpy.media import ToneAudioTrack
from peerpy.mediaconnection import MediaStream
from peerpy.peer import Peer
from peerpy.room import Room, RoomState

pytestmark = pytest.mark.anyio


@pytest.fixture
async def url() -> AsyncIterator[str]:
    config = BrokerConfig(host="127.0.0.1", port=0, path="/myapp", room_max_members=4)
    async with Broker(config) as broker:
        yield broker.url


async def until(predicate: Callable[[], bool], limit: float = 15) -> None:
    """Wait until ``predicate()`` holds (checked every 10 ms)."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - state changed by other tasks
            await anyio.sleep(0.01)


async def meshed(*rooms: Room) -> None:
    """Wait until every room has an open connection with each of its members."""
    await until(lambda: all(set(r.connections) == set(r.members) for r in rooms))


def room_connections(peer: Peer) -> list[DataConnection]:
    return [c for c in peer.connections if isinstance(c, DataConnection)]


async def test_join_returns_with_the_members_and_events_follow(url: str, peer_id: str) -> None:
    """join returns with the broker's snapshot; join/leave events and members stay live."""
    a, b, c = peer_id + "a", peer_id + "b", peer_id + "c"
    async with (
        Peer(a, server=url) as alice,
        Peer(b, server=url) as bob,
        Peer(c, server=url) as carol,
        alice.join("lobby", metadata={"name": "Alice"}) as ra,
    ):
        assert ra.joined
        assert dict(ra.members) == {}
        events: list[tuple[Any, ...]] = []
        ra.on("join", lambda member, meta: events.append(("join", member, meta)))
        ra.on("leave", lambda member: events.append(("leave", member)))
        async with bob.join("lobby", metadata={"name": "Bob"}) as rb:
            assert dict(rb.members) == {a: {"name": "Alice"}}  # at once: the snapshot
            with pytest.raises(TypeError):
                rb.members[c] = None  # type: ignore[index]  # read-only
            async with carol.join("lobby") as rc:
                assert dict(rc.members) == {a: {"name": "Alice"}, b: {"name": "Bob"}}
                await until(lambda: len(rb.members) == 2)
                assert rb.members[c] is None
            await until(lambda: c not in ra.members and c not in rb.members)
            assert rc.state is RoomState.LEFT
        await until(lambda: len(events) == 4)
        assert events == [
            ("join", b, {"name": "Bob"}),
            ("join", c, None),
            ("leave", c),
            ("leave", b),
        ]
        with pytest.raises(UsageError, match="already in room"):
            async with alice.join("lobby"):
                pass


async def test_broadcast_to_and_per_sender_order(url: str, peer_id: str) -> None:
    """send() reaches every other member, or those named in ``to``; values from each sender
    arrive in order, once, with the sender being the connection's peer."""
    a, b, c = peer_id + "a", peer_id + "b", peer_id + "c"
    async with (
        Peer(a, server=url) as alice,
        Peer(b, server=url) as bob,
        Peer(c, server=url) as carol,
        alice.join("lobby") as ra,
        bob.join("lobby") as rb,
        carol.join("lobby") as rc,
    ):
        # Sent before the mesh is up: each send waits for its connections.
        for n in range(100):
            await ra.send({"n": n, "sender": "mallory"})  # a payload field is not the sender
            await rc.send(n)
        got: list[tuple[str, Any]] = []
        with anyio.fail_after(20):
            while len(got) < 200:
                got.append(await rb.recv())
        assert [v["n"] for s, v in got if s == a] == list(range(100))
        assert [v for s, v in got if s == c] == list(range(100))
        assert [await ra.recv() for _ in range(100)] == [(c, n) for n in range(100)]
        assert [(s, v["n"]) for s, v in [await rc.recv() for _ in range(100)]] == [
            (a, n) for n in range(100)
        ]
        await ra.send("just bob", to=b)
        await ra.send("both", to=[b, c])
        assert await rb.recv() == (a, "just bob")
        assert await rb.recv() == (a, "both")
        assert await rc.recv() == (a, "both")
        await rc.send("last")
        assert await ra.recv() == (c, "last")
        assert await rb.recv() == (c, "last")
        with anyio.move_on_after(0.3):  # nothing else, nothing twice
            pytest.fail(f"unexpected {await rb.recv()!r}")
        with pytest.raises(UsageError, match="not members"):
            await ra.send("x", to="nobody")


async def test_one_connection_per_pair_opened_by_the_smaller_id(url: str, peer_id: str) -> None:
    """Members who learn of each other at once still open one connection per pair, the
    smaller id's; none reaches accept()."""
    ids = [peer_id + s for s in "dcba"]
    async with (
        Peer(ids[0], server=url) as p0,
        Peer(ids[1], server=url) as p1,
        Peer(ids[2], server=url) as p2,
        Peer(ids[3], server=url) as p3,
    ):
        peers = [p0, p1, p2, p3]
        async with anyio.create_task_group() as tg:  # all join at the same moment
            rooms: list[Room] = [p.join("mesh") for p in peers]
            for room in rooms:
                tg.start_soon(room.__aenter__)
        try:
            await meshed(*rooms)
            for peer in peers:
                conns = room_connections(peer)
                assert len(conns) == 3
                for conn in conns:
                    assert conn.originator == (peer.id < conn.peer)  # type: ignore[operator]
                    assert conn.metadata == {"peerpy-room": "mesh"}
                    assert conn.label == "peerpy-room:mesh"
                    assert conn.reliable
            with anyio.move_on_after(0.2):
                await p0.accept()
                pytest.fail("a room connection reached accept()")
        finally:
            for room in rooms:
                await room.leave()
        await until(lambda: not any(room_connections(p) for p in peers))


async def test_events_and_a_late_data_handler(url: str, peer_id: str) -> None:
    """A first data handler gets the values already waiting, in order, then the others."""
    async with (
        Peer(peer_id + "a", server=url) as alice,
        Peer(peer_id + "b", server=url) as bob,
        alice.join("lobby") as ra,
        bob.join("lobby") as rb,
    ):
        for n in range(5):
            await ra.send(n)
        await until(lambda: len(rb._inbox) == 5)
        seen: list[tuple[str, Any]] = []
        rb.on("data", lambda member, value: seen.append((member, value)))
        await ra.send(5)
        await until(lambda: len(seen) == 6)
        assert seen == [(peer_id + "a", n) for n in range(6)]


async def test_sending_waits_for_a_connection_within_a_bound(url: str, peer_id: str) -> None:
    """A member whose connection never opens (here a bare socket that joined the room and
    answers nothing) makes send() fail after Timeouts.negotiation, once the others got it."""
    a, b, ghost = peer_id + "a", peer_id + "b", peer_id + "0"  # "...0" < "...a": ghost offers
    ws = url.replace("http", "ws") + f"peerjs?key=peerjs&id={ghost}&token=t&ext=rooms"
    quick = Timeouts(negotiation=1.5)
    async with (
        connect(ws) as socket,
        Peer(a, server=url, timeouts=quick) as alice,
        Peer(b, server=url) as bob,
    ):
        assert json.loads(await socket.recv())["payload"] == {"ext": ["rooms"]}
        await socket.send(json.dumps({"type": "ROOM-JOIN", "payload": {"room": "lobby"}}))
        assert json.loads(await socket.recv())["type"] == "ROOM-MEMBERS"
        async with alice.join("lobby") as ra, bob.join("lobby") as rb:
            assert set(ra.members) == {ghost, b}
            started = time.monotonic()
            with pytest.raises(NegotiationFailedError, match=ghost):
                await ra.send("hello")
            assert 1.4 <= time.monotonic() - started < 5
            assert await rb.recv() == (a, "hello")  # the others got it
            await socket.close()  # the ghost leaves: sends skip it again
            await until(lambda: ghost not in ra.members)
            await ra.send("again")
            assert await rb.recv() == (a, "again")


async def test_a_non_member_cannot_talk_into_the_room(url: str, peer_id: str) -> None:
    """A connection marked for a room from a peer that is not a member is closed; nothing
    it sends reaches the room."""
    quick = Timeouts(half_open=1.0)
    async with (
        Peer(peer_id + "a", server=url, timeouts=quick) as alice,
        Peer(peer_id + "m", server=url) as mallory,
        alice.join("lobby") as ra,
    ):
        conn = await mallory.connect(
            peer_id + "a", metadata={"peerpy-room": "lobby"}, reliable=True
        )
        await conn.send("let me in")
        await conn.wait_closed()
        with anyio.move_on_after(0.3):
            pytest.fail(f"received {await ra.recv()!r}")
        # A room we are not in: refused at the OFFER, nothing is built.
        with pytest.raises(NegotiationFailedError):
            await mallory.connect(peer_id + "a", metadata={"peerpy-room": "other"}, timeout=1)


async def test_a_full_room_raises_room_full(url: str, peer_id: str) -> None:
    """Joining a room at --room-max-members raises RoomFullError (type room-full)."""
    async with contextlib.AsyncExitStack() as stack:
        peers = [
            await stack.enter_async_context(Peer(f"{peer_id}{n}", server=url)) for n in range(5)
        ]
        rooms = [await p.join("small").__aenter__() for p in peers[:4]]
        with pytest.raises(RoomFullError) as info:
            async with peers[4].join("small"):
                pass
        assert info.value.type == "room-full"
        for room in rooms:
            await room.leave()
        async with peers[4].join("small") as room:  # room again
            assert room.joined


async def test_leaving_closes_the_room(url: str, peer_id: str) -> None:
    """After leave(), recv() ends, send() refuses, and the room's connections are closed."""
    async with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:
        async with alice.join("lobby") as ra, bob.join("lobby") as rb:
            await ra.send("before")
            await until(lambda: len(rb._inbox) == 1)
        assert await rb.recv() == (peer_id + "a", "before")  # read after leaving
        with pytest.raises(ConnectionClosedError):
            await rb.recv()
        assert [item async for item in rb] == []
        with pytest.raises(NotOpenError):
            await rb.send("after")
        await until(lambda: not room_connections(alice) and not room_connections(bob))


async def test_a_broker_without_rooms_raises_at_once(node_broker_url: str, peer_id: str) -> None:
    """PeerJS's peer 1.0.2 ignores ext=rooms (connections work) and join raises at once."""
    async with (
        Peer(peer_id + "a", server=node_broker_url) as alice,
        Peer(peer_id + "b", server=node_broker_url) as bob,
    ):
        started = time.monotonic()
        with pytest.raises(RoomsUnsupportedError, match="this broker has no rooms"):
            async with alice.join("lobby"):
                pass
        assert time.monotonic() - started < 1
        conn = await alice.connect(peer_id + "b", reliable=True)
        await conn.send("still a PeerJS broker")
        assert await (await bob.accept()).recv() == "still a PeerJS broker"


async def test_room_call_sends_media_to_each_member(url: str, peer_id: str) -> None:
    """room.call(tracks) calls each member; theirs reach us as stream(member, stream)."""
    a, b = peer_id + "a", peer_id + "b"
    async with (
        Peer(a, server=url) as alice,
        Peer(b, server=url) as bob,
        alice.join("studio") as ra,
        bob.join("studio") as rb,
    ):
        streams: list[tuple[str, MediaStream]] = []
        rb.on("stream", lambda member, stream: streams.append((member, stream)))
        with anyio.fail_after(30):
            calls = await ra.call([ToneAudioTrack()])
        assert list(calls) == [b]
        await until(lambda: len(streams) == 1)
        member, stream = streams[0]
        assert member == a
        assert stream.audio is not None
        with anyio.fail_after(10):
            frame = await stream.audio.recv()
        assert frame.sample_rate > 0


# -- a member that crashes -------------------------------------------------------------------

MEMBER = textwrap.dedent(
    """
    import sys, anyio
    from peerpy import Peer

    async def main():
        async with Peer(sys.argv[1], server=sys.argv[2]) as peer:
            async with peer.join("lobby") as room:
                print("joined", flush=True)
                async for sender, data in room:
                    pass

    anyio.run(main)
    """
)


@pytest.fixture
def member(url: str, peer_id: str) -> Any:
    """Start a member in a process of its own; stop it when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(member_id: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-c", MEMBER, member_id, url],
            stdout=subprocess.PIPE,
            env={**os.environ, "PEERPY_BACKEND": "aiortc"},
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline() == b"joined\n"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
async def test_a_crashed_member_is_seen_leaving(
    url: str, peer_id: str, member: Any, how: str
) -> None:
    """A member killed is seen leaving through the broker at once; one frozen (its socket to
    the broker still open) through its connection, within Timeouts.remote_gone."""
    quick = Timeouts(remote_gone=3.0)
    async with (
        Peer(peer_id + "a", server=url, timeouts=quick) as alice,
        alice.join("lobby") as ra,
    ):
        left = anyio.Event()
        ra.on("leave", lambda who: left.set())
        process = await anyio.to_thread.run_sync(member, peer_id + "b")
        await meshed(ra)
        await ra.send("are you there?")
        started = time.monotonic()
        process.send_signal(getattr(signal, how))
        with anyio.fail_after(8):
            await left.wait()
        took = time.monotonic() - started
        assert dict(ra.members) == {}
        assert took < (2 if how == "SIGKILL" else quick.remote_gone + 3)
