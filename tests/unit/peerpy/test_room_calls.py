"""The mesh calls' track preparation (peerpy.rooms.calls): what the relay hands the encoders."""

from __future__ import annotations

import fractions

import pytest

from peerpy.media import PatternVideoTrack, ToneAudioTrack
from peerpy.rooms.calls import _Encodable

pytestmark = pytest.mark.anyio


async def test_video_reaches_the_encoders_as_yuv420p_with_its_timing() -> None:
    """An rgb24 frame is converted once, before the relay (encoders converting one shared frame
    in their threads at once crash PyAV), with its pts and time base kept."""
    source = PatternVideoTrack(64, 48, fps=50)
    track = _Encodable(source)
    assert track.kind == "video"
    for index in range(2):
        frame = await track.recv()
        assert frame.format.name == "yuv420p"
        assert (frame.width, frame.height) == (64, 48)
        assert frame.pts == index * 90_000 // 50
        assert frame.time_base == fractions.Fraction(1, 90_000)


async def test_audio_passes_unchanged() -> None:
    """Audio frames are the source's own."""
    track = _Encodable(ToneAudioTrack())
    assert track.kind == "audio"
    frame = await track.recv()
    assert (frame.format.name, frame.sample_rate) == ("s16", 48_000)
