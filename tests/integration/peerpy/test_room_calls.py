"""A room's mesh calls (peerpy.rooms.calls) between real peers on the real broker."""

from __future__ import annotations

import contextlib
import itertools
import statistics

import anyio
import pytest

from peerpy.media import PatternVideoTrack
from peerpy.mediaconnection import MediaStream
from peerpy.peer import Peer

from .test_room import until, url

__all__ = ["url"]

pytestmark = pytest.mark.anyio

FPS = 5


async def pts_steps(stream: MediaStream, frames: int) -> list[int]:
    """The pts differences between ``frames`` consecutive decoded video frames."""
    assert stream.video is not None
    pts: list[int] = []
    with anyio.fail_after(30):
        while len(pts) < frames:
            frame = await stream.video.recv()
            assert frame.pts is not None
            pts.append(frame.pts)
    return [later - earlier for earlier, later in itertools.pairwise(pts)]


async def test_each_member_gets_every_frame_of_one_track(url: str, peer_id: str) -> None:
    """One video track called to two members reaches each at its full rate: the calls share
    its frames through a relay instead of taking turns at them (which halved the rate)."""
    ids = [peer_id + n for n in "abc"]
    async with contextlib.AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(Peer(i, server=url)) for i in ids]
        rooms = [await stack.enter_async_context(p.join("studio")) for p in peers]
        streams: list[MediaStream] = []
        for room in rooms[1:]:
            room.on("stream", lambda member, stream: streams.append(stream))
        await until(lambda: all(len(r.members) == 2 for r in rooms))
        with anyio.fail_after(30):
            assert len(await rooms[0].call([PatternVideoTrack(64, 48, fps=FPS)])) == 2
        await until(lambda: len(streams) == 2, 30)
        step = 90_000 // FPS  # the pts of frame n is n * 90000 / fps
        for stream in streams:
            assert statistics.median(await pts_steps(stream, 6)) == step
