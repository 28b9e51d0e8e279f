"""MediaConnection and media helpers: calls between Python peers over a real broker.

The calls run on both backends, alone and mixed in both offer directions (see
``PAIR_CASES``), as the data suites do.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import av
import pytest
from aiortc import MediaStreamTrack

from peerpy.backends import wrtc_installed
from peerpy.config import Timeouts
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

from ...helpers.brokers import peerpy_server
from ...helpers.offers import no_candidates

pytestmark = pytest.mark.anyio

SMALL = {"width": 96, "height": 64, "fps": 20.0}


def av_tracks() -> list[MediaStreamTrack]:
    """A fresh tone and a small test pattern."""
    return [ToneAudioTrack(), PatternVideoTrack(**SMALL)]  # type: ignore[arg-type]


#: (broker, caller's backend, callee's backend): both brokers on aiortc, then wrtc
#: alone and mixed with aiortc in both offer directions (the broker only relays).
PAIR_CASES = [
    ("peerpy", "aiortc", "aiortc"),
    ("peer-1.0.2", "aiortc", "aiortc"),
    ("peerpy", "wrtc", "wrtc"),
    ("peerpy", "aiortc", "wrtc"),
    ("peerpy", "wrtc", "aiortc"),
]


@pytest.fixture(params=PAIR_CASES, ids=["-".join(case) for case in PAIR_CASES])
async def pair(request: pytest.FixtureRequest, peer_id: str) -> AsyncIterator[tuple[Peer, Peer]]:
    """Two peers registered on a broker, on their backends (alice calls)."""
    broker, *backends = request.param
    if "wrtc" in backends and not wrtc_installed():
        pytest.skip("wrtc is not installed (pip install 'peerpy-sdk[wrtc]')")
    async with contextlib.AsyncExitStack() as stack:
        if broker == "peerpy":
            url = await stack.enter_async_context(
                peerpy_server(expire_timeout=1.0, allow_discovery=True)
            )
        else:
            url = request.getfixturevalue("node_broker_url")
        alice = await stack.enter_async_context(
            Peer(peer_id + "a", server=url, backend=backends[0])
        )
        bob = await stack.enter_async_context(Peer(peer_id + "b", server=url, backend=backends[1]))
        assert (alice.backend, bob.backend) == tuple(backends)
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
    assert out.open
    assert incoming.open
    assert out.connection_id.startswith("mc_")
    assert incoming.connection_id == out.connection_id
    assert incoming.metadata == {"room": 7}
    assert out.data_channel is not None
    assert out.data_channel.label == AUX_CHANNEL_LABEL
    assert out.data_channel.ordered is False
    for call in (out, incoming):
        stream = await call.wait_stream()
        assert stream is call.remote_stream
        assert sorted(t.kind for t in stream.tracks) == ["audio", "video"]
        assert stream.id is not None
        assert stream.id == call.remote_stream.id
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
    """Closing a call closes the other end, whichever side hangs up; the tracks sent end."""
    alice, bob = pair
    for hang_up_by_caller in (True, False):
        local = av_tracks()
        out, incoming = await dial(alice, bob, local, [])
        closed = anyio.Event()
        (incoming if hang_up_by_caller else out).on("close", closed.set)
        await (out if hang_up_by_caller else incoming).close()
        with anyio.fail_after(10):
            await closed.wait()
        assert out.closed
        assert incoming.closed
        assert alice.connections == []
        assert bob.connections == []
        # As aiortc's senders do (MediaRelay keeps a source for other calls).
        assert [track.readyState for track in local] == ["ended", "ended"]


async def test_receive_only_answer(pair: tuple[Peer, Peer]) -> None:
    """answer() with no tracks receives only; the caller's remote stream is empty."""
    alice, bob = pair
    out, incoming = await dial(alice, bob, [PatternVideoTrack(**SMALL)], [])  # type: ignore[arg-type]
    assert len(await out.wait_stream()) == 0
    stream = await incoming.wait_stream()
    assert stream.video is not None
    assert stream.audio is None
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


async def test_several_calls_at_once(pair: tuple[Peer, Peer]) -> None:
    """Three simultaneous calls on one peer each carry their own media."""
    alice, bob = pair

    async def answer_all() -> None:
        answered = 0
        async for call in bob.calls():
            await call.answer([PatternVideoTrack(**SMALL)])  # type: ignore[arg-type]
            answered += 1
            if answered == 3:
                return

    outs: list[MediaConnection] = []

    async def place() -> None:
        outs.append(await alice.call(bob.id or "", [ToneAudioTrack()], receive=["video"]))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(answer_all)
            for _ in range(3):
                tg.start_soon(place)
        assert len({call.connection_id for call in outs}) == 3
        assert len(bob.connections) == 3
        for call in outs:
            async with FrameCounter(await call.wait_stream()) as counter:
                await counter.wait(video=3)
        for call in bob.connections:
            assert isinstance(call, MediaConnection)
            async with FrameCounter(await call.wait_stream()) as counter:
                await counter.wait(audio=5)


async def test_call_handler_and_answer_rules(broker_url: str, peer_id: str) -> None:
    """A call handler gets the unanswered call; answering twice or as caller is refused."""
    async with (
        Peer(peer_id + "a", server=broker_url) as alice,
        Peer(peer_id + "b", server=broker_url) as bob,
    ):
        received: list[MediaConnection] = []

        async def on_call(call: MediaConnection) -> None:
            received.append(call)
            assert not call.open
            assert not call.answered
            assert call.remote_stream is None
            with pytest.raises(UsageError, match="offered 0 video"):
                await call.answer([PatternVideoTrack(**SMALL)])  # type: ignore[arg-type]
            await call.answer([ToneAudioTrack()])

        bob.on("call", on_call)
        with anyio.fail_after(15):
            out = await alice.call(bob.id or "", [ToneAudioTrack()])
        with pytest.raises(UsageError, match="only the callee"):
            await out.answer()
        (incoming,) = received
        assert incoming.answered
        with pytest.raises(UsageError, match="already answered"):
            await incoming.answer()
        assert (await out.wait_stream()).audio is not None
        await out.close()
        assert (await out.wait_stream()) is out.remote_stream  # known before the close


async def test_unanswered_incoming_call_expires(peer_id: str) -> None:
    """The callee drops a call nobody answers after Timeouts.negotiation, with an error."""
    async with (
        peerpy_server() as url,
        Peer(peer_id + "a", server=url) as alice,
        Peer(peer_id + "b", server=url, timeouts=Timeouts(negotiation=0.5)) as bob,
    ):
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                with pytest.raises(NegotiationFailedError):
                    await alice.call(bob.id or "", [ToneAudioTrack()], timeout=1.5)

            tg.start_soon(caller)
            with anyio.fail_after(10):
                call = await bob.accept_call()
                await call.wait_closed()
        assert isinstance(call.error, NegotiationFailedError)
        with pytest.raises(ConnectionClosedError):
            await call.answer()
        with pytest.raises(NegotiationFailedError):
            await call.wait_stream()


async def test_record_then_play_file(pair: tuple[Peer, Peer], tmp_path: Path) -> None:
    """What arrives records to a file, and that file plays into another call."""
    alice, bob = pair
    path = tmp_path / "call.mkv"
    out, incoming = await dial(alice, bob, av_tracks(), [])
    with anyio.fail_after(10):
        async with Recorder(path, await incoming.wait_stream()):
            await anyio.sleep(1.0)
    await out.close()
    with av.open(str(path)) as container:
        kinds = sorted(stream.type for stream in container.streams)
        frames = sum(1 for _ in container.decode(video=0))
    assert kinds == ["audio", "video"]
    assert frames >= 5
    source = play_file(path)
    assert sorted(t.kind for t in source.tracks) == ["audio", "video"]
    try:
        out, incoming = await dial(alice, bob, source.tracks, [])
        with anyio.fail_after(10):
            async with FrameCounter(await incoming.wait_stream()) as counter:
                await counter.wait(audio=5, video=3)
        assert counter.last["video"].width == 96
    finally:
        source.stop()


class LateVideo(PatternVideoTrack):
    """A test pattern whose first frame comes late, after audio has started."""

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            await anyio.sleep(0.3)
        return await super().recv()


async def test_recorder_keeps_video_that_starts_late(tmp_path: Path) -> None:
    """Video whose first frame comes after audio packets is still recorded, at its size."""
    path = tmp_path / "late.mkv"
    tracks = [ToneAudioTrack(), LateVideo(width=64, height=48, fps=30)]
    with anyio.fail_after(10):
        async with Recorder(path, tracks):
            await anyio.sleep(0.8)
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (64, 48)
        counts = {"audio": 0, "video": 0}
        for packet in container.demux():
            if packet.size:
                counts[packet.stream.type] += 1
    assert counts["video"] >= 5
    assert counts["audio"] >= 5


async def test_bad_media_input(pair: tuple[Peer, Peer], tmp_path: Path) -> None:
    """Bad tracks, kinds, sizes and files raise UsageError subclasses, before any traffic."""
    alice, bob = pair
    track = ToneAudioTrack()
    target = bob.id or ""
    with pytest.raises(UsageError, match="not a single track"):
        await alice.call(target, track)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="twice"):
        await alice.call(target, [track, track])
    with pytest.raises(UsageError, match="needs tracks"):
        await alice.call(target, [])
    with pytest.raises(UsageError, match="receive takes"):
        await alice.call(target, receive="video")
    stopped = ToneAudioTrack()
    stopped.stop()
    with pytest.raises(UsageError, match="stopped"):
        await alice.call(target, [stopped])
    assert alice.connections == []
    with pytest.raises(UsageError):
        PatternVideoTrack(width=33, height=20)
    with pytest.raises(UsageError):
        ToneAudioTrack(frequency=30_000)
    with pytest.raises(MediaFileError):
        play_file(tmp_path / "missing.mp4")
    with pytest.raises(MediaFileError):
        Recorder(tmp_path / "no" / "dir" / "x.mkv", [track])


def frames_kept(backend: str) -> int:
    """The most video frames a remote track keeps for a reader that stalls, on ``backend``."""
    if backend == "aiortc":
        return MediaConnection.max_buffered_frames
    from peerpy.backends.wrtc_media import VIDEO_BUFFERED

    return VIDEO_BUFFERED


async def test_unread_remote_track_is_bounded(
    pair: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled reader finds only the newest frames (the oldest dropped), then reads on."""
    monkeypatch.setattr(MediaConnection, "max_buffered_frames", 10)
    alice, bob = pair
    fps = 30
    _out, incoming = await dial(alice, bob, [PatternVideoTrack(96, 64, fps)], [])
    video = (await incoming.wait_stream()).video
    assert video is not None
    kept = frames_kept(bob.backend)
    with anyio.fail_after(10):
        first = await video.recv()
        await anyio.sleep((kept + 60) / fps)  # 60 frames more than are kept arrive
        ready: list[av.VideoFrame] = []
        reading = anyio.current_time()
        while True:  # the frames kept come at once; then recv() waits for the next one
            with anyio.move_on_after(0.012) as waited:
                ready.append(await video.recv())
            if waited.cancelled_caught:
                break
        reading = anyio.current_time() - reading
    # What was kept, and what arrived while reading it (a loaded machine reads slowly).
    assert len(ready) <= kept + 2 + reading * fps, (len(ready), kept, reading)
    assert ready[0].time - first.time >= 10 / fps  # the oldest frames were dropped
    assert all(b.pts > a.pts for a, b in itertools.pairwise(ready))
    async with FrameCounter([video]) as counter:
        await counter.wait(video=5)


# -- call(sdp_transform=), answer(sdp_transform=) (issue 13) -------------------


@pytest.mark.anyio
async def test_call_and_answer_sdp_transform(url: str, peer_id: str) -> None:
    """call(sdp_transform=) rewrites the offer, answer(sdp_transform=) the answer."""
    offers: list[str] = []
    answers: list[str] = []

    def on_offer(sdp: str) -> str:
        offers.append(sdp)
        return sdp

    def on_answer(sdp: str) -> str:
        answers.append(sdp)
        return sdp

    failures: list[str] = []
    async with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:

        async def dial(transform: Any, limit: float | None = None) -> MediaConnection | None:
            made: list[MediaConnection] = []
            async with anyio.create_task_group() as tg:

                async def answer() -> None:
                    call = await bob.accept_call()
                    try:
                        await call.answer(sdp_transform=transform, timeout=limit)
                    except NegotiationFailedError:
                        failures.append("callee")

                tg.start_soon(answer)
                tracks: list[MediaStreamTrack] = [ToneAudioTrack()]
                with anyio.fail_after(30):
                    try:
                        made.append(
                            await alice.call(
                                peer_id + "b", tracks, sdp_transform=on_offer, timeout=limit
                            )
                        )
                    except NegotiationFailedError:
                        failures.append("caller")
            return made[0] if made else None

        out = await dial(on_answer)
        incoming_call = next(c for c in bob.connections if isinstance(c, MediaConnection))
        with pytest.raises(UsageError) as info:  # a user-facing message: no internal id
            await incoming_call.answer()
        assert incoming_call.connection_id not in str(info.value)
        assert out is not None
        assert out.open
        assert len(offers) == 1
        assert "m=audio" in offers[0]
        assert len(answers) == 1
        assert "m=audio" in answers[0]
        await out.close()
        # An answer without candidates never connects: both ends time out.
        assert await dial(no_candidates, limit=3) is None
        assert sorted(failures) == ["callee", "caller"]
