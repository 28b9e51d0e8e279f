"""MediaConnection and media helpers: calls between Python peers over a real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import av
import pytest
from aiortc import MediaStreamTrack

from peerpy.exceptions import (
    ConnectionClosedError,
    NegotiationFailedError,
    PeerUnavailableError,
    UsageError,
)
from peerpy.media import (
    FrameCounter,
    MediaFileError,
    PatternVideoTrack,
    Recorder,
    ToneAudioTrack,
    play_file,
)
from peerpy.mediaconnection import AUX_CHANNEL_LABEL, MediaConnection
from peerpy.peer import Peer

pytestmark = pytest.mark.anyio

SMALL = {"width": 96, "height": 64, "fps": 20.0}


def av_tracks() -> list[MediaStreamTrack]:
    """A fresh tone and a small test pattern."""
    return [ToneAudioTrack(), PatternVideoTrack(**SMALL)]  # type: ignore[arg-type]


@pytest.fixture
async def pair(broker_url: str, peer_id: str) -> AsyncIterator[tuple[Peer, Peer]]:
    """Two peers registered on the broker."""
    async with (
        Peer(peer_id + "a", server=broker_url) as alice,
        Peer(peer_id + "b", server=broker_url) as bob,
    ):
        yield alice, bob


async def dial(
    alice: Peer, bob: Peer, caller: Sequence[MediaStreamTrack], callee: Sequence[MediaStreamTrack]
) -> tuple[MediaConnection, MediaConnection]:
    """alice calls bob, who answers: return both ends, open."""
    async with anyio.create_task_group() as tg:
        calls: list[MediaConnection] = []

        async def answer() -> None:
            call = await bob.accept_call()
            calls.append(call)
            await call.answer(callee)

        tg.start_soon(answer)
        with anyio.fail_after(15):
            out = await alice.call(bob.id or "", caller, metadata={"room": 7})
    return out, calls[0]


async def test_audio_video_both_ways(pair: tuple[Peer, Peer]) -> None:
    """Audio and video flow both ways and decode; one stream holds all tracks; metadata travels."""
    alice, bob = pair
    streams: list[object] = []
    out, incoming = await dial(alice, bob, av_tracks(), av_tracks())
    incoming.on("stream", streams.append)
    assert out.open and incoming.open
    assert out.connection_id.startswith("mc_")
    assert incoming.connection_id == out.connection_id
    assert incoming.metadata == {"room": 7}
    assert out.data_channel is not None and out.data_channel.label == AUX_CHANNEL_LABEL
    assert out.data_channel.ordered is False
    for call in (out, incoming):
        stream = await call.wait_stream()
        assert stream is call.remote_stream
        assert sorted(t.kind for t in stream.tracks) == ["audio", "video"]
        assert stream.id is not None and stream.id == call.remote_stream.id
    assert incoming.remote_stream is not None
    assert incoming.remote_stream.id == out.local_stream.id
    with anyio.fail_after(10):
        async with (
            FrameCounter(out.remote_stream or []) as at_alice,
            FrameCounter(incoming.remote_stream) as at_bob,
        ):
            await at_alice.wait(audio=10, video=5)
            await at_bob.wait(audio=10, video=5)
    frame = at_bob.last["video"]
    assert (frame.width, frame.height) == (96, 64)
    assert streams == []  # the stream was known before the handler was registered


async def test_hang_up_propagates_both_ways(pair: tuple[Peer, Peer]) -> None:
    """Closing a call closes the other end, whichever side hangs up."""
    alice, bob = pair
    for hang_up_by_caller in (True, False):
        out, incoming = await dial(alice, bob, av_tracks(), [])
        closed = anyio.Event()
        (incoming if hang_up_by_caller else out).on("close", closed.set)
        await (out if hang_up_by_caller else incoming).close()
        with anyio.fail_after(10):
            await closed.wait()
        assert out.closed and incoming.closed
        assert alice.connections == [] and bob.connections == []


async def test_receive_only_answer(pair: tuple[Peer, Peer]) -> None:
    """answer() with no tracks receives only; the caller's remote stream is empty."""
    alice, bob = pair
    out, incoming = await dial(alice, bob, [PatternVideoTrack(**SMALL)], [])  # type: ignore[arg-type]
    assert len(await out.wait_stream()) == 0
    stream = await incoming.wait_stream()
    assert stream.video is not None and stream.audio is None
    with anyio.fail_after(10):
        async with FrameCounter(stream) as counter:
            await counter.wait(video=3)


async def test_unanswered_call_times_out(pair: tuple[Peer, Peer]) -> None:
    """A call nobody answers fails with NegotiationFailedError after the per-call timeout."""
    alice, bob = pair
    with anyio.fail_after(10), pytest.raises(NegotiationFailedError, match="not answered"):
        await alice.call(bob.id or "", [ToneAudioTrack()], timeout=1.0)
    assert alice.connections == []
    pending = await bob.accept_call()
    assert not pending.answered


async def test_call_unknown_id(broker_url: str, peer_id: str) -> None:
    """Calling an id nobody holds raises peer-unavailable."""
    async with Peer(peer_id, server=broker_url) as alice:
        with anyio.fail_after(10), pytest.raises(PeerUnavailableError):
            await alice.call("nobody" + peer_id, [ToneAudioTrack()])
        assert alice.connections == []
