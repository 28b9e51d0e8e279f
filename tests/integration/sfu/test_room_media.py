"""Room media through a real Janus: publish once, subscribe to each, viewers, Janus restarts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from peerpy_server import Broker, BrokerConfig

from peerpy.exceptions import NetworkError
from peerpy.media import PatternVideoTrack
from peerpy.mediaconnection import MediaStream
from peerpy.peer import Peer
from peerpy.room import Room

from ...helpers.janus_support import ADMIN_KEY, JanusServer
from ..peerpy.test_room import until

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def broker(*janus: JanusServer, **options: Any) -> AsyncIterator[Broker]:
    config = BrokerConfig(
        host="127.0.0.1", port=0, path="/myapp", janus_urls=[j.url for j in janus],
        janus_admin_key=ADMIN_KEY, **options,
    )  # fmt: skip
    async with Broker(config) as running:
        yield running


class Streams:
    """The streams a room's ``stream`` event delivered, by member (the latest one)."""

    def __init__(self, room: Room) -> None:
        self.by_member: dict[str, MediaStream] = {}
        room.on("stream", self.by_member.__setitem__)

    async def frame_from(self, member: str, limit: float = 15) -> None:
        await until(lambda: member in self.by_member, limit)
        video = self.by_member[member].video
        assert video is not None
        with anyio.fail_after(limit):
            frame = await video.recv()
        assert frame.width == 160


async def call_until_refused(room: Room) -> None:
    """Call the room until it raises (within 15 s)."""
    with anyio.fail_after(15):
        while True:
            await room.call([video()])
            await anyio.sleep(0.1)


def video() -> PatternVideoTrack:
    return PatternVideoTrack(160, 120, fps=10)


async def test_publishers_and_a_viewer_receive_every_feed(janus: JanusServer, peer_id: str) -> None:
    """Two members call the room, a third only watches: each receives (and decodes) the feeds of
    the others through Janus, named by member id; a member that leaves is gone from the others."""
    ids = [peer_id + n for n in "abc"]
    async with broker(janus) as running, contextlib.AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(Peer(i, server=running.url)) for i in ids]
        rooms = [await stack.enter_async_context(p.join("studio")) for p in peers]
        streams = [Streams(room) for room in rooms]
        with anyio.fail_after(30):
            assert await rooms[0].call([video()]) == {}
            assert await rooms[1].call([video()]) == {}
        await streams[0].frame_from(ids[1])
        await streams[1].frame_from(ids[0])
        await streams[2].frame_from(ids[0])
        await streams[2].frame_from(ids[1])
        assert ids[2] not in streams[0].by_member  # the viewer publishes nothing
        left: list[str] = []
        rooms[2].on("leave", left.append)
        await rooms[0].leave()
        await until(lambda: left == [ids[0]])


@contextlib.asynccontextmanager
async def publishing(
    peer_id: str, *januses: JanusServer
) -> AsyncIterator[tuple[Room, Room, Streams, MediaStream]]:
    """alice and bob in "studio" through Janus; alice publishes, bob has seen a frame of it.

    Yields alice's and bob's rooms, bob's streams and the stream bob first got from alice.
    """
    a, b = peer_id + "a", peer_id + "b"
    async with (
        broker(*januses) as running,
        Peer(a, server=running.url) as alice,
        Peer(b, server=running.url) as bob,
        alice.join("studio") as ra,
        bob.join("studio") as rb,
    ):
        seen = Streams(rb)
        with anyio.fail_after(30):
            await ra.call([video()])
        await seen.frame_from(a)
        yield ra, rb, seen, seen.by_member[a]


async def test_janus_restart_is_a_clear_error_then_the_room_recovers(
    janus: JanusServer, peer_id: str
) -> None:
    """SIGKILL Janus: calling raises NetworkError saying the SFU is lost; once Janus is back, the
    broker recreates the room and the members publish again by themselves."""
    a = peer_id + "a"
    async with publishing(peer_id, janus) as (_, rb, seen, first):
        janus.kill()
        with pytest.raises(NetworkError, match="SFU"):
            await call_until_refused(rb)
        janus.start()
        await until(lambda: seen.by_member[a] is not first, 20)
        await seen.frame_from(a)


async def test_rooms_move_to_the_other_janus_when_theirs_dies(peer_id: str) -> None:
    """Two Janus instances: SIGKILL the one the room lives on; the broker moves the room to the
    other and the members publish there again (frames flow again) without doing anything."""
    from peerpy_server.sfu.placement import choose, parse_instance

    from ...helpers.janus_support import running_janus

    a = peer_id + "a"
    with running_janus() as first, running_janus() as second:
        instances = [parse_instance(first.url), parse_instance(second.url)]
        home = choose("studio", instances, {first.url, second.url})
        assert home is not None
        dying, other = (first, second) if home.url == first.url else (second, first)
        async with publishing(peer_id, first, second) as (ra, _, seen, first_stream):
            dying.kill()
            await until(lambda: seen.by_member[a] is not first_stream, 20)
            await seen.frame_from(a)
            assert ra._calls._info is not None
            assert ra._calls._info.url == other.url
