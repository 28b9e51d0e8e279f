"""Media sources and sinks for calls, on top of aiortc's media tools.

Sources (tracks to pass to :meth:`Peer.call() <peerpy.Peer.call>` or
:meth:`MediaConnection.answer() <peerpy.MediaConnection.answer>`):

- :class:`PatternVideoTrack`: moving colour bars, generated with numpy, no file;
- :class:`ToneAudioTrack`: a sine tone, generated, no file;
- :func:`play_file`: a file or device read by aiortc's ``MediaPlayer``.

Sinks (for the tracks of :attr:`MediaConnection.remote_stream
<peerpy.MediaConnection.remote_stream>`):

- :class:`Recorder`: write to a file with aiortc's ``MediaRecorder``;
- :class:`FrameCounter`: read and count frames (and keep the last one), which
  also serves to discard media that nobody else reads.

A track gives each frame to one reader: to send one source in several calls,
subscribe each call to it through ``aiortc.contrib.media.MediaRelay``.
"""

from __future__ import annotations

import contextlib
import fractions
import math
import os
from collections.abc import Iterable
from typing import Any

import anyio
import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer, MediaRecorder
from aiortc.mediastreams import MediaStreamError

from .exceptions import ConnectionClosedError, MediaFileError, UsageError

__all__ = [
    "FileSource",
    "FrameCounter",
    "MediaFileError",
    "PatternVideoTrack",
    "Recorder",
    "ToneAudioTrack",
    "play_file",
]

_VIDEO_CLOCK = 90_000


class _PacedTrack(MediaStreamTrack):
    """A generated track that releases frame ``n`` at ``start + n / rate``."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self._rate = rate
        self._start: float | None = None
        self._count = 0

    async def _next_index(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        now = anyio.current_time()
        if self._start is None:
            self._start = now
        else:
            await anyio.sleep(max(0.0, self._start + self._count / self._rate - now))
        index = self._count
        self._count += 1
        return index


class PatternVideoTrack(_PacedTrack):
    """Colour bars scrolling by one step per frame, ``width`` x ``height`` at ``fps``.

    Frame ``n`` has ``pts = n * 90000 / fps`` (a 90 kHz clock, as RTP video).
    """

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15.0) -> None:
        if not (isinstance(width, int) and isinstance(height, int)):
            raise UsageError("width and height must be integers")
        if not (2 <= width <= 4096 and 2 <= height <= 4096) or width % 2 or height % 2:
            raise UsageError(f"size must be even and within 2..4096, got {width}x{height}")
        if not 0 < fps <= 120:
            raise UsageError(f"fps must be within (0, 120], got {fps}")
        super().__init__(fps)
        self.width = width
        self.height = height
        self.fps = fps
        colours = np.array(
            [[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0],
             [192, 0, 192], [192, 0, 0], [0, 0, 192], [16, 16, 16]],
            dtype=np.uint8,
        )  # fmt: skip
        columns = (np.arange(width) * len(colours)) // width
        self._bars = np.ascontiguousarray(np.broadcast_to(colours[columns], (height, width, 3)))

    async def recv(self) -> av.VideoFrame:
        """Return the next frame, waiting until its time.  Cancelling loses nothing."""
        index = await self._next_index()
        step = max(1, self.width // 64)
        image = np.roll(self._bars, index * step, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = round(index * _VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, _VIDEO_CLOCK)
        return frame


class ToneAudioTrack(_PacedTrack):
    """A continuous sine tone: mono, signed 16 bit, in 20 ms frames."""

    kind = "audio"

    def __init__(
        self, frequency: float = 440.0, *, sample_rate: int = 48_000, volume: float = 0.25
    ) -> None:
        if sample_rate not in (8_000, 16_000, 24_000, 48_000):
            raise UsageError(f"sample_rate must be 8000, 16000, 24000 or 48000, not {sample_rate}")
        if not 0 < frequency < sample_rate / 2:
            raise UsageError(f"frequency must be within (0, {sample_rate // 2}) Hz")
        if not 0 <= volume <= 1:
            raise UsageError(f"volume must be within [0, 1], got {volume}")
        self.samples_per_frame = sample_rate // 50
        super().__init__(50.0)
        self.frequency = frequency
        self.sample_rate = sample_rate
        self.volume = volume

    async def recv(self) -> av.AudioFrame:
        """Return the next 20 ms of tone, waiting until its time.  Cancelling loses nothing."""
        index = await self._next_index()
        n = self.samples_per_frame
        t = (np.arange(n) + index * n) / self.sample_rate
        wave = np.sin(2 * math.pi * self.frequency * t) * (self.volume * 32767)
        frame = av.AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, n), format="s16", layout="mono"
        )
        frame.sample_rate = self.sample_rate
        frame.pts = index * n
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        return frame


class FileSource:
    """The tracks of a media file (or device), read by aiortc's ``MediaPlayer``."""

    def __init__(self, player: MediaPlayer) -> None:
        #: aiortc's player, for advanced use.
        self.player = player

    @property
    def audio(self) -> MediaStreamTrack | None:
        """The audio track, if the file has audio."""
        track: MediaStreamTrack | None = self.player.audio
        return track

    @property
    def video(self) -> MediaStreamTrack | None:
        """The video track, if the file has video."""
        track: MediaStreamTrack | None = self.player.video
        return track

    @property
    def tracks(self) -> list[MediaStreamTrack]:
        """The tracks the file has: pass them to ``call()`` or ``answer()``."""
        return [track for track in (self.audio, self.video) if track is not None]

    def stop(self) -> None:
        """Stop reading the file (the tracks end)."""
        for track in self.tracks:
            track.stop()


def play_file(
    path: str | os.PathLike[str],
    *,
    loop: bool = False,
    format: str | None = None,
    options: dict[str, str] | None = None,
) -> FileSource:
    """Open a media file (or, with ``format``, a device) to send it in a call.

    Files are read at their own pace (real time).  ``loop`` restarts at the
    end.  Raise :class:`MediaFileError` if it cannot be opened.
    """
    try:
        player = MediaPlayer(os.fspath(path), format=format, options=options, loop=loop)
    except (OSError, av.FFmpegError) as exc:
        raise MediaFileError(f"cannot play {os.fspath(path)!r}: {exc}") from None
    source = FileSource(player)
    if not source.tracks:
        raise MediaFileError(f"{os.fspath(path)!r} has no audio or video")
    return source


def _as_tracks(tracks: Iterable[MediaStreamTrack]) -> tuple[MediaStreamTrack, ...]:
    if isinstance(tracks, MediaStreamTrack):
        raise UsageError("pass a list of tracks (or a MediaStream), not a single track")
    result = tuple(tracks)
    if not all(isinstance(track, MediaStreamTrack) for track in result):
        raise UsageError("tracks must be aiortc MediaStreamTrack objects")
    return result


class _PrimedTrack(MediaStreamTrack):
    """A track whose first frame is read ahead (:meth:`prime`), then replayed."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._first: Any = None

    async def prime(self) -> None:
        if self._first is None:
            with contextlib.suppress(MediaStreamError):
                self._first = await self._source.recv()

    async def recv(self) -> Any:
        frame, self._first = self._first, None
        return frame if frame is not None else await self._source.recv()


class Recorder:
    """Write ``tracks`` (e.g. a call's ``remote_stream``) to a file while in ``async with``.

    The container comes from the file name (``.mp4``, ``.mkv``, ``.webm``,
    ``.wav``...) or ``format``; aiortc picks the codecs (H.264/AAC, VP8/Opus
    for webm, PCM for wav).  The video size is the first frame's.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        tracks: Iterable[MediaStreamTrack],
        *,
        format: str | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        given = _as_tracks(tracks)
        if not given:
            raise UsageError("nothing to record: no tracks")
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise MediaFileError(
                f"cannot record to {self.path!r}: {folder} is not a writable folder"
            )
        try:
            self._recorder: MediaRecorder | None = MediaRecorder(
                self.path, format=format, options=options
            )
        except (OSError, ValueError, av.FFmpegError) as exc:
            raise MediaFileError(f"cannot record to {self.path!r}: {exc}") from None
        # MediaRecorder sizes a video stream from its first frame, but the
        # first packet muxed (often audio) opens every codec: then the size can
        # no longer be set and the video is lost.  So video goes first, and its
        # first frame is read before recording starts (see start()).
        self._video = [_PrimedTrack(t) for t in given if t.kind == "video"]
        for track in [*self._video, *(t for t in given if t.kind != "video")]:
            self._recorder.addTrack(track)

    async def start(self) -> None:
        """Wait for the first frame of each video track, then start writing.

        Cancelling leaves the recorder unstarted (:meth:`stop` still closes the file).
        """
        if self._recorder is None:
            raise UsageError("the recorder is stopped")
        for track in self._video:
            await track.prime()
        await self._recorder.start()

    async def stop(self) -> None:
        """Flush the encoders and close the file; idempotent.  Not cancellable."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            with anyio.CancelScope(shield=True):
                await recorder.stop()
            for track in self._video:
                track.stop()

    async def __aenter__(self) -> Recorder:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class FrameCounter:
    """Read ``tracks`` while in ``async with``, counting frames by kind.

    Every frame is read and dropped (only the last of each kind is kept in
    :attr:`last`), so this is also a sink for media you do not want.

    >>> async with FrameCounter(call.remote_stream) as counter:  # doctest: +SKIP
    ...     await counter.wait(video=30)
    """

    def __init__(self, tracks: Iterable[MediaStreamTrack]) -> None:
        self._tracks = _as_tracks(tracks)
        #: Frames read so far, by kind.
        self.counts: dict[str, int] = {"audio": 0, "video": 0}
        #: The last frame read, by kind.
        self.last: dict[str, Any] = {}
        self._ended = 0
        self._changed = anyio.Event()
        self._stack = contextlib.AsyncExitStack()

    @property
    def ended(self) -> bool:
        """Whether every track ended."""
        return self._ended == len(self._tracks)

    async def __aenter__(self) -> FrameCounter:
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.callback(tg.cancel_scope.cancel)
        for track in self._tracks:
            tg.start_soon(self._drain, track)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._stack.__aexit__(*exc_info)

    async def _drain(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.counts[track.kind] = self.counts.get(track.kind, 0) + 1
                self.last[track.kind] = frame
                self._notify()
        except MediaStreamError:
            self._ended += 1
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, *, audio: int = 0, video: int = 0) -> None:
        """Wait until at least ``audio`` and ``video`` frames were read.

        Raise :class:`ConnectionClosedError` if every track ends first.
        Cancelling stops waiting; counting goes on.
        """
        while self.counts["audio"] < audio or self.counts["video"] < video:
            if self.ended:
                raise ConnectionClosedError(f"media ended after {self.counts} frames")
            await self._changed.wait()
