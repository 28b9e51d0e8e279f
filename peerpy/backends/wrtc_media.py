"""Calls on wrtc: aiortc-style tracks in and out of libwebrtc's media engine.

Imported only with :mod:`peerpy.backends.wrtc`. libwebrtc encodes and decodes
(VP8/VP9/H.264/AV1 video, Opus/G.722/PCMU/PCMA audio, with its congestion
control and jitter buffers) on its own threads; ``webrtc.aiortc`` already
moves frames across: a sender's pump awaits ``track.recv()`` and writes each
``av.VideoFrame``/``av.AudioFrame`` into a ``MediaStreamTrackGenerator``, and a
remote track reads a ``MediaStreamTrackProcessor`` and converts each
``VideoFrame``/``AudioData`` back into an av frame. What it does not do is
speak aiortc's own classes: its tracks subclass its copy of aiortc's
``MediaStreamTrack``, and raise its copy of ``MediaStreamError``. This module
adapts the two, so the application keeps aiortc's types on either backend:

- :class:`Feed`: what a wrtc sender reads for an application's (aiortc) track.
  It ends the way the layer expects, and a sender that stops it (the call
  closing) stops the application's track too, as aiortc's senders do.
- :class:`ReceivedTrack`: a remote track as an ``aiortc.MediaStreamTrack``,
  whose ``recv()`` gives av frames and raises aiortc's ``MediaStreamError``
  when the track ends, so :class:`peerpy.media.FrameCounter`,
  :class:`peerpy.media.Recorder`, aiortc's ``MediaRecorder`` and ``MediaRelay``
  read it unchanged.

Frames are converted only when read: a remote track nobody reads costs its
decoding and nothing else. Once read, libwebrtc's track processor keeps at
most about a second of frames for a slow reader (:data:`VIDEO_BUFFERED`
frames of video, :data:`AUDIO_BUFFERED` of audio), dropping the oldest: this
is the wrtc counterpart of ``MediaConnection.max_buffered_frames``, which only
aiortc's queues follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import aiortc
from aiortc.mediastreams import MediaStreamError
from webrtc.aiortc import MediaStreamError as WrtcMediaStreamError
from webrtc.aiortc import MediaStreamTrack as WrtcTrack
from webrtc.aiortc import RemoteStreamTrack as WrtcRemoteTrack

if TYPE_CHECKING:
    from av.frame import Frame
    from av.packet import Packet

__all__ = [
    "AUDIO_BUFFERED",
    "VIDEO_BUFFERED",
    "Feed",
    "ReceivedTrack",
    "drain",
    "feed",
    "name_tracks",
    "received",
]

#: Video frames libwebrtc's track processor keeps for a slow reader (``webrtc.aiortc``'s).
VIDEO_BUFFERED: Final = 30
#: 20 ms audio frames it keeps (100 chunks of 10 ms).
AUDIO_BUFFERED: Final = 50


class Feed(WrtcTrack):  # type: ignore[misc]
    """An application's aiortc track, as the ``webrtc.aiortc`` sender reads it.

    Same kind and id (the id the remote sees in the SDP's ``msid``). The
    sender's pump awaits :meth:`recv` and hands each frame to libwebrtc; a
    pump cancelled while it holds a native frame would drop it unclosed
    (wrtc then warns, ``ResourceWarning``), so the peer connection ends its
    feeds first (:func:`drain`): the pump then stops between frames.
    """

    def __init__(self, source: aiortc.MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._id = source.id
        #: The application's track.
        self.source = source
        self._ending: asyncio.Future[None] | None = None
        self._read = False

    async def recv(self) -> Frame | Packet[Any]:
        """The source's next frame; the layer's ``MediaStreamError`` once it or the feed ended.

        Cancelling (the call closing) cancels the source's ``recv()``.
        """
        self._read = True
        if self._ending is None:
            self._ending = asyncio.get_running_loop().create_future()
        if self._ending.done():
            raise WrtcMediaStreamError
        frame = asyncio.ensure_future(self.source.recv())
        try:
            await asyncio.wait((frame, self._ending), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not frame.done():
                frame.cancel()  # ended (or cancelled): the source's frame is not wanted
        if not frame.done() or frame.cancelled():
            raise WrtcMediaStreamError
        try:
            return frame.result()
        except MediaStreamError:
            raise WrtcMediaStreamError from None

    def stop(self) -> None:
        """Stop the feed and its source (as an aiortc sender stops its track)."""
        super().stop()
        self.source.stop()

    def end(self) -> bool:
        """Make :meth:`recv` end the sender's pump; whether a pump reads this feed."""
        if self._ending is not None and not self._ending.done():
            self._ending.set_result(None)
        return self._read and self.readyState == "live"


async def drain(tracks: Iterable[object], limit: float) -> None:
    """End the :class:`Feed` among ``tracks`` and wait (up to ``limit`` s) for their pumps to stop.

    Cancelling stops waiting.
    """
    loop = asyncio.get_running_loop()
    stopped: list[asyncio.Future[None]] = []
    for track in tracks:
        if isinstance(track, Feed) and track.end():
            done = loop.create_future()
            track.once("ended", lambda done=done: done.done() or done.set_result(None))
            stopped.append(done)
    if stopped:
        await asyncio.wait(stopped, timeout=limit)


class ReceivedTrack(aiortc.MediaStreamTrack):
    """A remote track of a wrtc call, as an ``aiortc.MediaStreamTrack``.

    Same kind and id (the remote's ``msid`` track id); stopping it stops
    receiving, and it ends when the call closes.
    """

    def __init__(self, native: WrtcRemoteTrack) -> None:
        super().__init__()
        self.kind = native.kind
        self._id = native.id
        self._native = native
        # The frame being read: a cancelled recv() leaves it to the next one
        # (the layer would otherwise drop, unclosed, a native frame it holds).
        self._next: asyncio.Future[Frame] | None = None

    async def recv(self) -> Frame:
        """The next decoded frame (``av.VideoFrame`` or ``av.AudioFrame``).

        Raise ``aiortc.mediastreams.MediaStreamError`` once the track ended.
        Cancelling loses no frame: the next ``recv()`` returns it.
        """
        if self.readyState != "live":
            raise MediaStreamError
        if self._next is None:
            self._next = asyncio.ensure_future(self._native.recv())
            self._next.add_done_callback(_retrieve)
        pending = self._next
        try:
            frame: Frame = await asyncio.shield(pending)
        except WrtcMediaStreamError:
            self.stop()
            raise MediaStreamError from None
        finally:
            if pending.done():
                self._next = None
        return frame

    def stop(self) -> None:
        super().stop()
        self._native.stop()


def _retrieve(future: asyncio.Future[Any]) -> None:
    # The exception (the track ended) is raised to the reader, if one still waits.
    if not future.cancelled():
        future.exception()


def name_tracks(entries: dict[str, Any], ids: dict[str, str]) -> None:
    """Give ``entries`` (a stats report in JSON form) the application's track ids.

    libwebrtc's ``media-source`` stats name the track generator a sender
    reads; ``ids`` maps those to the ids of the tracks the application sent.
    """
    for entry in entries.values():
        if isinstance(entry, dict):
            native = entry.get("trackIdentifier")
            if isinstance(native, str) and native in ids:
                entry["trackIdentifier"] = ids[native]


def feed(track: object) -> object:
    """What a wrtc peer connection's ``addTrack`` gets for ``track`` (aiortc ones: a Feed)."""
    if isinstance(track, aiortc.MediaStreamTrack) and not isinstance(track, WrtcTrack):
        return Feed(track)
    return track


def received(track: aiortc.MediaStreamTrack) -> aiortc.MediaStreamTrack:
    """The aiortc track the application reads for a wrtc remote ``track``."""
    if isinstance(track, WrtcRemoteTrack):
        return ReceivedTrack(track)
    return track
