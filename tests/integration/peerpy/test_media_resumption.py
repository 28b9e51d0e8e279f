"""Resumable calls (peerpy.resumablecall) between two real peers on loopback.

One side's ICE transport is stopped under a call, as a dead path ends it
(its peer connection and the tracks it sends stay, as after a network
change); the same MediaConnection objects must go on over a new peer
connection: ``reconnecting``, ``stream`` again with the remote's new tracks,
``resumed``, and frames decoded after it both ways, on both backends and
mixed.  Breaking the path on the aiortc side needs no lab; the network-change
case runs in ``tests/lab/test_media_resumption.py``.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from aiortc import MediaStreamTrack

from peerpy.backends import wrtc_installed
from peerpy.config import Timeouts
from peerpy.exceptions import RemoteGoneError
from peerpy.media import FrameCounter, PatternVideoTrack, ToneAudioTrack
from peerpy.mediaconnection import MediaConnection
from peerpy.peer import Peer

pytestmark = pytest.mark.anyio

SMALL = {"width": 96, "height": 64, "fps": 20.0}
#: Short enough that the side still on a dead path notices it quickly.
TIMEOUTS = Timeouts(remote_gone=2.0, resume=20.0)


def av_tracks() -> list[MediaStreamTrack]:
    """A fresh tone and a small test pattern."""
    return [ToneAudioTrack(), PatternVideoTrack(**SMALL)]  # type: ignore[arg-type]


async def dial(alice: Peer, bob: Peer, metadata: Any = None) -> tuple[MediaConnection, ...]:
    """alice calls bob, who answers, both sending audio and video: both ends, open."""
    calls: list[MediaConnection] = []
    async with anyio.create_task_group() as tg:

        async def answer() -> None:
            call = await bob.accept_call()
            calls.append(call)
            await call.answer(av_tracks())

        tg.start_soon(answer)
        with anyio.fail_after(15):
            out = await alice.call(bob.id or "", av_tracks(), metadata=metadata)
    return out, calls[0]


async def decoded(*calls: MediaConnection) -> None:
    """Frames of both kinds decode from each call's current remote stream."""
    with anyio.fail_after(10):
        for call in calls:
            async with FrameCounter(await call.wait_stream()) as counter:
                await counter.wait(audio=5, video=3)


async def break_path(call: MediaConnection) -> None:
    """Stop the aiortc ICE transport under ``call``: its path is dead, nothing else closed."""
    transport = call.peer_connection.sctp
    assert transport is not None
    await transport.transport.transport.stop()


@pytest.mark.parametrize(
    ("backends", "broken"),
    [(("aiortc", "aiortc"), 0), (("aiortc", "wrtc"), 0), (("wrtc", "aiortc"), 1)],
    ids=["aiortc-aiortc", "aiortc-wrtc", "wrtc-aiortc"],
)
async def test_a_call_resumes_with_frames_after(
    url: str, peer_id: str, backends: tuple[str, str], broken: int
) -> None:
    """A call whose path dies goes on over a new generation, same objects: reconnecting,
    stream again (new remote tracks), resumed, and frames decoded both ways after it."""
    if "wrtc" in backends and not wrtc_installed():
        pytest.skip("wrtc is not installed")
    events: list[tuple[int, str]] = []
    async with (
        Peer(peer_id + "a", server=url, backend=backends[0], timeouts=TIMEOUTS) as alice,
        Peer(peer_id + "b", server=url, backend=backends[1], timeouts=TIMEOUTS) as bob,
    ):
        calls = await dial(alice, bob)
        await decoded(*calls)
        before = [call.remote_stream for call in calls]
        resumed = [anyio.Event(), anyio.Event()]
        for side, call in enumerate(calls):
            assert call.resumable
            call.on("reconnecting", lambda e, side=side: events.append((side, "reconnecting")))
            call.on("stream", lambda s, side=side: events.append((side, "stream")))
            call.on("resumed", lambda side=side: events.append((side, "resumed")))
            call.on("resumed", resumed[side].set)
        await break_path(calls[broken])
        with anyio.fail_after(20):
            for event in resumed:
                await event.wait()
        for side, call in enumerate(calls):
            assert call.open
            assert call.generation == 1
            assert call.remote_stream is not before[side]
            assert [e for s, e in events if s == side] == ["reconnecting", "stream", "resumed"]
        await decoded(*calls)
        # Hanging up still closes both ends (the bye: not taken for a lost path).
        closed = anyio.Event()
        calls[1].on("close", closed.set)
        await calls[0].close()
        with anyio.fail_after(5):
            await closed.wait()
        assert calls[1].error is None


async def test_a_call_not_offered_resumption_ends_with_its_path(url: str, peer_id: str) -> None:
    """No resumption without both sides' offer (Timeouts.resume=None on one side, as a
    PeerJS remote): the call ends with its path, the remote's with RemoteGoneError."""
    async with (
        Peer(peer_id + "a", server=url, timeouts=TIMEOUTS) as alice,
        Peer(peer_id + "b", server=url, timeouts=Timeouts(remote_gone=2.0, resume=None)) as bob,
    ):
        out, incoming = await dial(alice, bob)
        assert not out.resumable
        assert not incoming.resumable
        await break_path(out)
        with anyio.fail_after(10):
            await out.wait_closed()
            await incoming.wait_closed()
        assert isinstance(incoming.error, RemoteGoneError)
        assert out.generation == incoming.generation == 0
