"""Media calls between peerpy and the real PeerJS 1.5.5 in Chromium (fake camera and microphone).

Each case runs on both brokers, with the Python peer on each backend (aiortc's
codecs, then libwebrtc's through :mod:`peerpy.backends.wrtc_media`).  Python
sends a 440 Hz tone and 320x240 colour bars (:mod:`peerpy.media`); the browser
sends Chromium's fake devices
(a beep every half second, an animated 320x240 picture).  Each side checks
that the other's frames decode:

* Python reads decoded frames from ``call.wait_stream()``: their size, that
  the picture moves and that the audio is not silent;
* the page plays the remote stream in a ``<video>`` until frames are
  presented (``requestVideoFrameCallback``), samples the colour bars, finds
  the tone's frequency with an ``AnalyserNode`` and compares ``getStats()``
  inbound-rtp figures taken half a second apart.

Hang-up is checked both ways: PeerJS's ``close`` event when Python hangs up,
and Python's call closing when the browser hangs up.
"""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
import pytest
from aiortc import MediaStreamTrack

from peerpy import MediaConnection
from peerpy.backends import wrtc_installed
from peerpy.media import PatternVideoTrack, ToneAudioTrack
from peerpy.mediaconnection import MediaStream

from .pairs import Pair

pytestmark = [pytest.mark.anyio, pytest.mark.interop]


@pytest.fixture(scope="module", params=["aiortc", "wrtc"])
def python_backend(request: pytest.FixtureRequest) -> str:
    """Every case runs with the Python peer on each backend (wrtc: when installed)."""
    if request.param == "wrtc" and not wrtc_installed():
        pytest.skip("wrtc is not installed (pip install 'peerpy-sdk[wrtc]')")
    return str(request.param)


#: Ask conftest for a Chromium with the fake camera and microphone.
CHROMIUM_MEDIA = True

METADATA = {"room": "zoë", "n": [1, 2.5, None]}
TONE_HZ = 440.0
#: The browser asks its fake camera for this size (page/harness.js); Python's pattern has it too.
SIZE = (320, 240)
#: Frames each side must decode: one second of 20 ms audio, 10 video frames.
AUDIO_FRAMES = 50
VIDEO_FRAMES = 10


def python_tracks() -> list[MediaStreamTrack]:
    """A fresh tone and colour bars."""
    return [ToneAudioTrack(TONE_HZ), PatternVideoTrack(*SIZE, fps=15)]


async def read(track: MediaStreamTrack, count: int, into: list[Any]) -> None:
    for _ in range(count):
        into.append(await track.recv())


async def assert_python_decodes(stream: MediaStream) -> None:
    """Python decodes the browser's fake camera and microphone."""
    assert len(stream.audio_tracks) == 1
    assert len(stream.video_tracks) == 1
    assert stream.audio is not None
    assert stream.video is not None
    audio: list[Any] = []
    video: list[Any] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, stream.audio, AUDIO_FRAMES, audio)
            tg.start_soon(read, stream.video, VIDEO_FRAMES, video)
    assert {(frame.width, frame.height) for frame in video} == {SIZE}
    assert video[-1].pts > video[0].pts
    # The fake camera's picture moves.
    first, last = (frame.to_ndarray(format="gray") for frame in (video[0], video[-1]))
    assert not np.array_equal(first, last)
    # The fake microphone beeps twice a second: one second of audio is not silent.
    assert {frame.sample_rate for frame in audio} == {48_000}
    loudest = max(float(np.sqrt(np.mean(f.to_ndarray().astype(float) ** 2))) for f in audio)
    assert loudest > 1000


def assert_browser_decoded(report: dict[str, Any]) -> None:
    """The page's report says Python's tone and colour bars decoded and play."""
    assert (report["videoWidth"], report["videoHeight"]) == SIZE
    start, end = report["mediaTimes"]
    assert end > start
    # Eight bars, each a different mix of the three channels on or off.
    assert len(report["colours"]) >= 6, report["colours"]
    # 4096-point FFT at 48 kHz: bins are 11.7 Hz wide.
    assert report["tone"]["state"] == "running"
    assert abs(report["tone"]["hz"] - TONE_HZ) < 25, report["tone"]
    before, after = report["before"], report["after"]
    assert (after["audio"]["codec"], after["video"]["codec"]) == ("audio/opus", "video/VP8")
    assert after["video"]["framesDecoded"] > before["video"]["framesDecoded"] > 0
    assert after["audio"]["totalSamplesReceived"] > before["audio"]["totalSamplesReceived"] > 0
    assert (after["video"]["frameWidth"], after["video"]["frameHeight"]) == SIZE


async def hang_up(pair: Pair, call: MediaConnection, by: str) -> None:
    """``by`` hangs up; the other side sees the call close."""
    if by == "python":
        with anyio.fail_after(10):
            await call.close()
        assert await pair.page.wait_call_closed(call.connection_id)
    else:
        await pair.page.hang_up(call.connection_id)
        with anyio.fail_after(10):
            await call.wait_closed()
    assert call.closed
    assert not call.open
    info = await pair.page.call_info(call.connection_id)
    assert info.closed
    assert not info.open


@pytest.mark.parametrize("hang_up_by", ["python", "browser"])
async def test_browser_calls_python(pair: Pair, hang_up_by: str) -> None:
    """A browser call reaches Python with its metadata; both sides decode; hang-up propagates."""
    call = await pair.browser_calls(metadata=METADATA)
    assert call.peer == pair.browser_id
    assert call.metadata == METADATA
    assert call.connection_id.startswith("mc_")
    assert not call.originator
    streams: list[MediaStream] = []
    call.on("stream", streams.append)
    with anyio.fail_after(20):
        await call.answer(python_tracks())
    assert call.open

    stream = await call.wait_stream()
    await assert_python_decodes(stream)
    assert streams == [stream]  # peerpy: one event for both tracks
    assert_browser_decoded(await pair.page.check_media(call.connection_id))
    info = await pair.page.call_info(call.connection_id)
    assert info.open
    assert info.peer == pair.python_id
    # PeerJS emits `stream` once per remote track: twice, with the same stream.
    assert len(info.streams) == 2
    assert {s["id"] for s in info.streams} == {call.local_stream.id}
    assert all((s["audio"], s["video"]) == (1, 1) for s in info.streams)

    await hang_up(pair, call, hang_up_by)


@pytest.mark.parametrize("hang_up_by", ["python", "browser"])
async def test_python_calls_browser(pair: Pair, hang_up_by: str) -> None:
    """A Python call reaches the browser with metadata; both sides decode; hang-up propagates."""
    call, info = await pair.call_browser(python_tracks(), metadata=METADATA)
    assert call.open
    assert call.originator
    assert info.peer == pair.python_id
    assert info.metadata == METADATA
    assert info.type == "media"

    await assert_python_decodes(await call.wait_stream())
    assert_browser_decoded(await pair.page.check_media(call.connection_id))
    info = await pair.page.call_info(call.connection_id)
    assert len(info.streams) == 2
    assert {s["id"] for s in info.streams} == {call.local_stream.id}
    assert info.errors == []

    await hang_up(pair, call, hang_up_by)


async def test_python_calls_to_receive_only(pair: Pair) -> None:
    """Python calls with no tracks, receive=[audio, video]: the browser's answer decodes."""
    call, info = await pair.call_browser([], receive=["audio", "video"])
    await assert_python_decodes(await call.wait_stream())
    assert info.streams == []  # Python sends nothing: PeerJS never emits `stream`
    await hang_up(pair, call, "python")


async def test_browser_answers_receive_only(pair: Pair) -> None:
    """The browser answers with no stream: Python's media still decodes there."""
    call, _ = await pair.call_browser(python_tracks(), send=False)
    stream = await call.wait_stream()
    assert len(stream) == 0
    assert_browser_decoded(await pair.page.check_media(call.connection_id))
    await hang_up(pair, call, "browser")
