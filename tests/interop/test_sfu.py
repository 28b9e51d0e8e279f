"""A browser in an SFU room: PeerJS 1.5.5 in Chromium, with peerpy-rooms.js, through a real Janus.

The broker runs with ``--janus`` (a real Janus, tests/helpers/janus_support.py),
so the room's media goes through Janus's VideoRoom.  The page joins with the
module the broker serves (``peerpy-rooms.js``, whose SFU part is
``peerpy-rooms-sfu.js``: Janus's WebSocket API spoken by the module itself) and
publishes Chromium's fake camera with ``room.call(stream)``; two Python members
publish colour bars.  Frames are decoded both ways: the page plays each
member's stream in a ``<video>`` and counts the frames presented
(``requestVideoFrameCallback``); each Python member decodes the browser's video.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from peerpy_protocol.ids import random_token
from playwright.async_api import BrowserContext

from peerpy.media import PatternVideoTrack
from peerpy.mediaconnection import MediaStream

from ..helpers.janus_support import JANUS, running_janus
from ..integration.sfu.test_room_media import broker
from .browser import BrowserPage, StaticServer, open_page
from .pairs import python_peer

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

#: The fake camera and microphone.
CHROMIUM_MEDIA = True

#: Page code: join the room with the broker's module, play every member's stream and count its
#: frames, publish the fake camera; the state is in ``window.sfuTest``.
JOIN_AND_CALL = """
async ([brokerUrl, id, room]) => {
  const { joinRoom } = await import(brokerUrl + "peerpy-rooms.js");
  const url = new URL(brokerUrl);
  const peer = new Peer(id, { host: url.hostname, port: Number(url.port), path: url.pathname,
                              key: "peerjs", secure: false, config: { iceServers: [] } });
  await new Promise((resolve, reject) => { peer.on("open", resolve); peer.on("error", reject); });
  const joined = await joinRoom(peer, room);
  const test = { peer, room: joined, frames: {}, sizes: {}, left: [] };
  joined.on("leave", (member) => test.left.push(member));
  joined.on("stream", (member, stream) => {
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.srcObject = stream;
    document.body.appendChild(video);
    test.frames[member] = 0;
    const onFrame = () => {
      test.frames[member] += 1;
      test.sizes[member] = [video.videoWidth, video.videoHeight];
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    video.play().catch((err) => console.warn("play failed", err));
  });
  window.sfuTest = test;
  const local = await navigator.mediaDevices.getUserMedia({
    audio: true, video: { width: 320, height: 240, frameRate: 15 } });
  await joined.call(local);
  return Object.keys(Object.fromEntries(joined.members)).sort();
}
"""


@pytest.fixture
async def page(chromium: BrowserContext, static_server: StaticServer) -> AsyncIterator[BrowserPage]:
    async with open_page(chromium, static_server.origin) as page:
        page.page.on("console", lambda message: print(f"[browser] {message.text}"))
        yield page


async def until_page(page: BrowserPage, check: Any, limit: float = 30) -> dict[str, Any]:
    """Poll the page's state until ``check(state)`` holds; return that state."""
    script = (
        "() => ({ frames: window.sfuTest.frames, sizes: window.sfuTest.sizes,"
        " left: window.sfuTest.left, sfu: window.sfuTest.room._sfu !== null })"
    )
    with anyio.fail_after(limit):
        while not check(state := dict(await page.page.evaluate(script))):  # noqa: ASYNC110
            await anyio.sleep(0.1)
    return state


async def decoded_frame(streams: dict[str, MediaStream], member: str) -> tuple[int, int]:
    """Wait for ``member``'s stream; return the size of a decoded video frame of it."""
    with anyio.fail_after(30):
        while member not in streams:  # noqa: ASYNC110 - set by the room's stream event
            await anyio.sleep(0.05)
        video = streams[member].video
        assert video is not None
        frame = await video.recv()
    return frame.width, frame.height


async def test_a_browser_and_two_python_members_through_janus(page: BrowserPage) -> None:
    """The page and two Python members call one SFU room: the page presents frames of both
    Python members' video, each Python member decodes the page's camera; the page sees a
    member leave."""
    if JANUS is None:
        pytest.fail("janus is missing: run scripts/setup (Debian's janus)")
    token = random_token()
    alice_id, browser_id, carol_id = f"a{token}", f"b{token}", f"c{token}"
    with running_janus() as janus:
        async with broker(janus) as running, contextlib.AsyncExitStack() as stack:
            alice = await stack.enter_async_context(python_peer(alice_id, running.url))
            carol = await stack.enter_async_context(python_peer(carol_id, running.url))
            rooms = [
                await stack.enter_async_context(alice.join("studio")),
                await stack.enter_async_context(carol.join("studio")),
            ]
            streams: list[dict[str, MediaStream]] = [{}, {}]
            for room, seen in zip(rooms, streams, strict=True):
                room.on("stream", seen.__setitem__)
            with anyio.fail_after(30):
                for room in rooms:
                    assert await room.call([PatternVideoTrack(160, 120, fps=10)]) == {}
            members = await page.page.evaluate(JOIN_AND_CALL, [running.url, browser_id, "studio"])
            assert members == [alice_id, carol_id]
            for seen in streams:  # Python decodes the browser's camera
                assert await decoded_frame(seen, browser_id) == (320, 240)
            # The browser presents frames of both Python members, received through Janus.
            state = await until_page(
                page, lambda s: all(s["frames"].get(m, 0) >= 5 for m in (alice_id, carol_id))
            )
            assert state["sfu"]
            assert state["sizes"][alice_id] == [160, 120]
            await rooms[1].leave()
            await until_page(page, lambda s: carol_id in s["left"], 10)
            await page.page.evaluate("() => window.sfuTest.room.leave()")
            await page.page.evaluate("() => window.sfuTest.peer.destroy()")
