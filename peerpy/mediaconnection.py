"""MediaConnection: a PeerJS call, audio and video tracks over one RTCPeerConnection.

A call is one RTCPeerConnection carrying the caller's tracks plus one
auxiliary data channel, as PeerJS 1.5 makes it (spec §5):

- the caller adds every track with one shared stream id (aiortc gives all the
  senders of a peer connection the same ``msid`` stream id, so a browser gets
  ``evt.streams[0]``), opens the auxiliary channel (label ``"undefined"``, the
  string a browser makes of PeerJS's unset label; unordered) and sends the
  OFFER;
- the callee gets the call when the OFFER arrives and must :meth:`answer` it,
  with its own tracks or none (receive only);
- hanging up closes the auxiliary channel, and the other side closes when it
  sees that channel close: PeerJS 1.5's way of propagating ``close``.

The remote media is one :class:`MediaStream` holding every negotiated track,
known as soon as the remote description is applied (:meth:`wait_stream`), and
announced by one ``stream`` event, not one per track.

Between two peerpy peers a call is resumable (:mod:`peerpy.resumablecall`):
when its peer connection is lost it goes on over a new one (``reconnecting``,
then ``stream`` again with the remote's new tracks, then ``resumed``), as a
data connection does (:mod:`peerpy.generation`).

Calls run on the peer's backend (see :mod:`peerpy.backends`): the tracks
sent are aiortc ``MediaStreamTrack`` objects on either, and so are the remote
tracks, whose ``recv()`` gives ``av`` frames; on wrtc,
:mod:`peerpy.backends.wrtc_media` adapts them to libwebrtc's media engine.

Decoded frames of a remote track wait until the application reads them: at
most :attr:`MediaConnection.max_buffered_frames` per track on aiortc (whose
own queue is unbounded; the backend bounds it, ``Backend.receive_track``, and
counts those frames in ``frames_dropped``), about a second of media on wrtc
(libwebrtc's track processor); the oldest frames are dropped, so a track
nobody reads cannot exhaust memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

import anyio
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection
from aiortc.sdp import SessionDescription as ParsedSdp
from peerpy_protocol.payloads import ConnectionType, Resume, SessionDescription

from .connection import Connection, ConnectionArgs, SdpTransform
from .diagnosis import failure_message
from .exceptions import (
    ConnectionClosedError,
    NegotiationFailedError,
    PeerError,
    ProtocolError,
    UsageError,
    WebRTCError,
)
from .resumable import BYE_WAIT
from .resumablecall import BYE, ResumableCall, SentTrack

if TYPE_CHECKING:  # annotations only
    from peerpy_protocol.payloads import AnswerPayload, OfferPayload

__all__ = ["AUX_CHANNEL_LABEL", "MediaConnection", "MediaStream"]

#: The auxiliary channel's label: PeerJS 1.5 passes a media connection's
#: (unset) label to ``createDataChannel``, which browsers turn into this string.
AUX_CHANNEL_LABEL = "undefined"

_KINDS = ("audio", "video")


class MediaStream:
    """Tracks that travel together under one stream id (the W3C ``MediaStream``)."""

    def __init__(self, id: str | None, tracks: Iterable[MediaStreamTrack]) -> None:
        #: The ``msid`` stream id, ``None`` if the remote sent none.
        self.id = id
        #: Every track, in SDP order.
        self.tracks: tuple[MediaStreamTrack, ...] = tuple(tracks)

    def __repr__(self) -> str:
        kinds = ", ".join(track.kind for track in self.tracks) or "no tracks"
        return f"<MediaStream {self.id} ({kinds})>"

    def __iter__(self) -> Iterator[MediaStreamTrack]:
        return iter(self.tracks)

    def __len__(self) -> int:
        return len(self.tracks)

    @property
    def audio_tracks(self) -> list[MediaStreamTrack]:
        """The audio tracks."""
        return [track for track in self.tracks if track.kind == "audio"]

    @property
    def video_tracks(self) -> list[MediaStreamTrack]:
        """The video tracks."""
        return [track for track in self.tracks if track.kind == "video"]

    @property
    def audio(self) -> MediaStreamTrack | None:
        """The first audio track, if any."""
        return next(iter(self.audio_tracks), None)

    @property
    def video(self) -> MediaStreamTrack | None:
        """The first video track, if any."""
        return next(iter(self.video_tracks), None)


def check_tracks(tracks: Iterable[MediaStreamTrack] | None) -> tuple[MediaStreamTrack, ...]:
    """Return ``tracks`` as a tuple, or raise :class:`UsageError` if one is unusable."""
    if tracks is None:
        return ()
    if isinstance(tracks, MediaStreamTrack):
        raise UsageError("pass a list of tracks, e.g. [track], not a single track")
    result = tuple(tracks)
    for track in result:
        if not isinstance(track, MediaStreamTrack):
            raise UsageError(f"not a MediaStreamTrack: {track!r}")
        if track.kind not in _KINDS:
            raise UsageError(f"track kind must be audio or video, got {track.kind!r}")
        if track.readyState != "live":
            raise UsageError(f"{track.kind} track {track.id} is already stopped")
    if len(set(map(id, result))) != len(result):
        raise UsageError("the same track is given twice")
    return result


def _stream_ids(sdp: str) -> dict[str, str]:
    """Map each media section's mid to its ``msid`` stream id."""
    ids: dict[str, str] = {}
    for media in ParsedSdp.parse(sdp).media:
        if media.msid and media.rtp.muxId:
            ids[media.rtp.muxId] = media.msid.split()[0]
    return ids


def _receivable(sdp: str) -> dict[str, int]:
    """Count the offered audio/video sections we could send on, by kind."""
    counts = dict.fromkeys(_KINDS, 0)
    for media in ParsedSdp.parse(sdp).media:
        if media.kind in counts and media.direction in ("sendrecv", "recvonly", None):
            counts[media.kind] += 1
    return counts


class MediaConnection(Connection):
    """A call with a remote peer (PeerJS's ``MediaConnection``).

    Make one with :meth:`Peer.call() <peerpy.Peer.call>`, which returns it once
    media flows; take incoming ones with :meth:`Peer.accept_call()
    <peerpy.Peer.accept_call>`, ``async for call in peer.calls()`` or a
    ``call`` handler, then :meth:`answer` them.  The remote media is
    :attr:`remote_stream` (also :meth:`wait_stream`); close with :meth:`close`.

    Events: ``open``, ``stream(MediaStream)`` (once, and again after each
    resume), ``close``, ``error``, ``iceStateChanged(state)``,
    ``willCloseOnRemote`` (the auxiliary channel opened: from now on a hang-up
    on either side closes both) and, on a :attr:`resumable` call,
    ``reconnecting(error)`` and ``resumed``.
    """

    type: ClassVar[ConnectionType] = ConnectionType.MEDIA
    _EVENTS: ClassVar[tuple[str, ...]] = (
        *Connection._EVENTS,
        "stream",
        "willCloseOnRemote",
        "reconnecting",
        "resumed",
    )

    #: Decoded frames kept per remote track for the application on aiortc; older ones are
    #: dropped (wrtc keeps about a second: see :mod:`peerpy.backends.wrtc_media`).
    max_buffered_frames: ClassVar[int] = 60

    def __init__(
        self,
        args: ConnectionArgs,
        *,
        offer: OfferPayload | None = None,
        tracks: Sequence[MediaStreamTrack] = (),
        receive: Sequence[str] = (),
        resumable: bool = True,
    ) -> None:
        super().__init__(args)
        pc = args.pc
        self._may_resume = resumable  # False: never offered (a room's call)
        self._resumable: ResumableCall | None = None
        self._aux_open = anyio.Event()  # the first auxiliary channel opened
        self._offer = offer
        self._local_tracks = tuple(tracks)
        self._receive = tuple(receive)
        self._answering = False
        self._handled = anyio.Event()  # callee: answer() was called
        self._remote_tracks: list[MediaStreamTrack] = []
        self._remote_stream: MediaStream | None = None
        self._stream_known = anyio.Event()
        self._channel: RTCDataChannel | None = None
        self._follow(pc)
        pc.on("datachannel", self._on_datachannel)

    def _follow(self, pc: RTCPeerConnection) -> None:
        """Take ``pc``'s remote tracks and follow its state (a resumed call's: its new one)."""
        self._remote_tracks = []
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", lambda: self._on_connection_state(pc))

    # -- public state -------------------------------------------------------

    @property
    def answered(self) -> bool:
        """Whether :meth:`answer` was called (always true for the caller)."""
        return self.originator or self._answering

    @property
    def local_stream(self) -> MediaStream:
        """The tracks we send."""
        pc = self.peer_connection
        ids = _stream_ids(pc.localDescription.sdp) if pc.localDescription else {}
        return MediaStream(next(iter(ids.values()), None), self._local_tracks)

    @property
    def remote_stream(self) -> MediaStream | None:
        """The remote media, once the remote description is applied (else ``None``)."""
        return self._remote_stream

    @property
    def data_channel(self) -> RTCDataChannel | None:
        """The auxiliary data channel (it carries no data; its closing means hang-up)."""
        return self._channel

    async def wait_stream(self) -> MediaStream:
        """Return the remote stream once every negotiated track is known.

        The stream may be empty if the remote sends nothing.  Raise why the
        call ended if it ends first.  Cancelling stops waiting; the call is
        unaffected.
        """
        await self._wait_unless_closed(self._stream_known)
        if self._remote_stream is None:
            raise self._error or ConnectionClosedError(f"Call with {self.peer} closed.")
        return self._remote_stream

    # -- caller -------------------------------------------------------------

    async def _dial(self, limit: float) -> None:
        """Send the OFFER and wait until media flows (the caller's ``call()``).

        Raise :class:`NegotiationFailedError` after ``limit`` seconds.
        Cancelling closes the call.
        """

        def timed_out() -> str:
            what = "was not answered" if not self._remote_set else "answered but did not connect"
            return f"call to {self.peer} {what} within {limit:g} s"

        await self._open_within(limit, self._start_as_caller, timed_out)

    async def _start_as_caller(self) -> None:
        """Add the tracks, open the auxiliary channel (as PeerJS does), send the OFFER."""
        self._put_media(self.peer_connection)
        await self._send_offer({}, self._resume_offer())

    def _put_media(self, pc: RTCPeerConnection) -> None:
        """Caller: the tracks, the kinds received only and the auxiliary channel on ``pc``."""
        self._send_tracks(pc)
        sending = {track.kind for track in self._local_tracks}
        for kind in self._receive:
            if kind not in sending:
                pc.addTransceiver(kind, direction="recvonly")
        self._attach(pc.createDataChannel(AUX_CHANNEL_LABEL, ordered=False))

    def _send_tracks(self, pc: RTCPeerConnection) -> None:
        """Send the local tracks on ``pc``, each through its own :class:`SentTrack`."""
        for track in self._local_tracks:
            self._backend.add_track(pc, SentTrack(track))

    def _resume_offer(self) -> Resume | None:
        """What we offer to resume, if ``Timeouts.resume`` and the call allow it."""
        if self._owner.timeouts.resume is None or not self._may_resume:
            return None
        return Resume(0, 0)

    def _on_answer(self, answer: AnswerPayload) -> None:
        if answer.resume is not None and self._resume_offer() is not None:
            self._enable_resume()

    def _enable_resume(self) -> None:
        self._resumable = ResumableCall(self, self._log)
        self._switch = self._resumable.switch

    # -- callee -------------------------------------------------------------

    async def answer(
        self,
        tracks: Iterable[MediaStreamTrack] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-call deadline
        sdp_transform: SdpTransform | None = None,
    ) -> None:
        """Accept the call, sending ``tracks`` (none: receive only); return once media flows.

        ``sdp_transform(sdp) -> sdp`` rewrites the SDP answer before it is
        sent (PeerJS's ``sdpTransform``).

        Raise :class:`UsageError` if the call was already answered, we made it,
        or the caller offered no section for one of the tracks' kinds;
        :class:`ConnectionClosedError` if it is closed; and
        :class:`NegotiationFailedError` if it is not connected within
        ``timeout`` seconds (default ``Timeouts.negotiation``).  Cancelling
        closes the call.
        """
        if self.originator:
            raise UsageError("only the callee answers a call")
        if self._answering:
            raise UsageError(f"this call from {self.peer} is already answered")
        if self.closed:
            raise ConnectionClosedError(f"Call from {self.peer} is closed: cannot answer.")
        assert self._offer is not None
        local = check_tracks(tracks)
        self._check_offered(local, self._offer.sdp)
        self._answering = True
        self.sdp_transform = sdp_transform
        self._local_tracks = local
        self._handled.set()
        limit = self._owner.timeouts.negotiation if timeout is None else timeout
        offer = self._offer.sdp
        await self._open_within(
            limit,
            lambda: self._accept_offer(offer),
            lambda: f"call from {self.peer} did not connect in {limit:g} s",
        )

    def _check_offered(self, tracks: Sequence[MediaStreamTrack], offer: SessionDescription) -> None:
        try:
            offered = _receivable(offer.sdp)
        except Exception as exc:  # aiortc's parser raises assorted errors
            raise ProtocolError(f"{self.peer} offered an unreadable SDP: {exc}") from None
        for kind in _KINDS:
            wanted = sum(track.kind == kind for track in tracks)
            if wanted > offered[kind]:
                raise UsageError(
                    f"cannot send {wanted} {kind} track(s): the caller offered "
                    f"{offered[kind]} {kind} section(s)"
                )

    async def _accept_offer(self, offer: SessionDescription) -> None:
        try:
            await self._set_remote(offer)
            self._send_tracks(self.peer_connection)
            mine = self._resume_offer()
            assert self._offer is not None
            if self._offer.resume is not None and mine is not None:
                self._enable_resume()
            await self._send_answer(mine if self._resumable is not None else None)
        except PeerError:
            raise
        except Exception as exc:  # aiortc raises assorted errors on bad SDP
            error = WebRTCError(f"answering the call from {self.peer}: {exc}")
            self._fail(error)
            raise error from None

    async def _answer(self, offer: OfferPayload) -> None:
        # A media OFFER is not applied by the signaling pump: answer() does it.
        self._log.warning("ignoring a second OFFER for %s", self.connection_id)

    async def _ring(self, deliver: Callable[[MediaConnection], bool], limit: float) -> None:
        """Hand this incoming call to the application; drop it if unanswered in ``limit`` s.

        Cancelling closes the call.
        """
        try:
            if not deliver(self):
                await self._close()
                return
            with anyio.move_on_after(limit):
                await self._wait_unless_closed(self._handled)
                return
        except BaseException:
            await self._close()
            raise
        self._fail(NegotiationFailedError(f"call from {self.peer} not answered in {limit:g} s"))
        await self._close()

    # -- both sides ---------------------------------------------------------

    async def _set_remote(self, description: SessionDescription) -> None:
        await super()._set_remote(description)
        # aiortc reported every remote track while applying the description.
        ids = _stream_ids(description.sdp)
        stream_id = next(iter(ids.values()), None)
        self._remote_stream = MediaStream(stream_id, self._remote_tracks)
        self._stream_known.set()
        if self._remote_tracks and not self.reconnecting:  # else once resumed
            self._events.emit("stream", self._remote_stream)

    def _on_track(self, track: MediaStreamTrack) -> None:
        # The backend gives the aiortc track the application reads, bounded.
        self._remote_tracks.append(self._backend.receive_track(track, self.max_buffered_frames))

    def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self.peer_connection:
            return  # a peer connection replaced by resumption
        state = pc.connectionState
        if state == "connected" and not self.reconnecting:
            self._set_open()
        elif state == "failed":
            failed = f"Negotiation of connection to {self.peer} failed."
            self._path_lost(NegotiationFailedError(failure_message(failed, pc)))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            self._log.warning("ignoring a second data channel on call %s", self.connection_id)
            return
        self._attach(channel)

    def _attach(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        # Events of a channel replaced by resumption are ignored.
        channel.on("open", lambda: self._on_channel_open(channel))
        channel.on("close", lambda: self._on_channel_close(channel))
        channel.on("message", self._on_channel_message)
        if channel.readyState == "open":
            self._on_channel_open(channel)

    def _first_channel_open(self) -> None:
        self._aux_open.set()
        self._events.emit("willCloseOnRemote")

    def _on_channel_close(self, channel: RTCDataChannel) -> None:
        if channel is not self._channel:
            return
        resumable = self._resumable
        if resumable is not None and not resumable.bye_received:
            self._path_lost(ConnectionClosedError(f"the call's channel to {self.peer} closed"))
        else:
            self._close_soon()

    def _on_channel_message(self, message: bytes | str) -> None:
        if self._resumable is not None and message == BYE:
            self._resumable.bye_received = True
            self._close_soon()

    def _on_closing(self) -> None:
        self._closing = True
        self._handled.set()
        if self._resumable is not None:
            self._resumable.send_bye()  # else the remote would resume
        if self._opened.is_set():
            for track in self._local_tracks:  # as aiortc's senders stop theirs
                track.stop()
        if self._channel is not None:
            self._channel.close()

    async def close(self) -> None:
        """Hang up: the remote closes too once it sees the auxiliary channel close.

        The local tracks a sender read from end with the call (aiortc's senders
        stop them, and wrtc's do the same): to keep a source for other calls,
        send a ``MediaRelay`` subscription of it.  A resumable call says bye
        first (once its auxiliary channel is open: a call is open before) and
        gives the remote up to a second in all to close.  Not cancellable.
        """
        self._closing = True
        resumable = self._resumable
        if resumable is not None:
            with anyio.move_on_after(min(self._owner.timeouts.close, BYE_WAIT)):
                await self._wait_unless_closed(self._aux_open)
                if resumable.send_bye():
                    await self.wait_closed()
        await self._close()

    async def __aenter__(self) -> MediaConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
