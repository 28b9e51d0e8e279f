"""The media of one room through an SFU (Janus's VideoRoom): publish once, subscribe to each.

When the broker says a room's media goes through Janus (``ROOM-MEMBERS``
with ``"sfu"``, see docs/rooms.md), the :class:`~peerpy.room.Room` swaps its
mesh :class:`~peerpy.rooms.calls.Calls` for :class:`SfuCalls`, which has the
same methods:

- on joining, it opens a session on Janus's WebSocket API
  (:mod:`peerpy.rooms.janus`) and joins the VideoRoom room as a *publisher*
  shown as our member id (with the PIN, the token and the participant id the
  broker gave us), publishing nothing yet: so a member that never calls (a viewer) still receives;
- :meth:`SfuCalls.start` (``room.call(tracks)``) publishes ``tracks`` once:
  one aiortc peer connection to Janus, whatever the number of members;
- each publisher Janus lists (now or later) gets a subscriber handle and a
  receive-only peer connection; its tracks reach the room as its
  ``stream(member, MediaStream)`` event, the member being the feed's display
  name (the room emits it only for a current member);
- a feed that leaves (unpublished, its participant gone, a hangup) is hung up.

If the Janus connection drops (Janus died or restarted), every peer connection
is closed and a warning logged; the broker's ``ROOM-SFU`` then gives the new
place (:meth:`SfuCalls.use`), where we join again and publish the same tracks
again.  ``ROOM-SFU`` with no SFU makes :meth:`SfuCalls.start` raise
:class:`~peerpy.exceptions.NetworkError` with the broker's reason.

Everything runs in tasks of the peer (``host._spawn``): cancelling the peer
closes the WebSocket and the peer connections.  aiortc only: the SFU's
connections are media connections, which peerpy makes with aiortc.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

import anyio
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from peerpy_protocol.janus import Event, SfuInfo

from .. import backends as _backend
from ..config import Timeouts
from ..exceptions import NetworkError, ProtocolError
from ..mediaconnection import MediaConnection, MediaStream, check_tracks
from ..network import NetworkPolicy
from .janus import FAILURES, JanusSession, open_session

__all__ = ["SfuCalls", "SfuHost"]

JSON = Any


class SfuHost(Protocol):
    """What the SFU needs from its :class:`~peerpy.peer.Peer`."""

    configuration: RTCConfiguration
    network: NetworkPolicy

    @property
    def id(self) -> str | None: ...
    @property
    def timeouts(self) -> Timeouts: ...
    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None: ...


class _Feed:
    """Our subscription to one member's feed."""

    def __init__(self, member: str, handle: int) -> None:
        self.member = member
        self.handle = handle
        self.pc: RTCPeerConnection | None = None


class SfuCalls:
    """The room's media through Janus (see the module docstring)."""

    def __init__(
        self,
        host: SfuHost,
        room: str,
        *,
        on_stream: Callable[[str, MediaStream], None],
        logger: logging.Logger,
    ) -> None:
        self._host, self._room, self._log = host, room, logger
        self._on_stream = on_stream
        self._info: SfuInfo | None = None
        self._why = "the broker has not said where the room's SFU is yet"
        self._tracks: tuple[MediaStreamTrack, ...] | None = None
        self._relay = MediaRelay()  # publishing again after a move reuses the tracks
        self._session: JanusSession | None = None
        self._publisher = 0  # our publisher handle
        self._published: RTCPeerConnection | None = None
        # what _published carries, and on which session: publishing twice is once
        self._published_as: tuple[JanusSession, tuple[MediaStreamTrack, ...]] | None = None
        self._publishing = anyio.Lock()
        self._feeds: dict[int, _Feed] = {}  # Janus feed id -> subscription
        # Janus's trickled candidates: applied to the handle's peer connection once it has
        # Janus's description, kept until then.
        self._ready_pcs: dict[int, RTCPeerConnection] = {}
        self._trickled: dict[int, list[JSON]] = {}
        self._stop: anyio.Event | None = None  # set to end the current session
        self._ready = anyio.Event()  # the current session joined the room
        self._closed = False

    # -- what the room calls (the mesh Calls' methods) ------------------------

    def use(self, info: SfuInfo | None, why: str = "") -> None:
        """The broker's word on the room's SFU: join it (again), or there is none now."""
        if self._closed:
            return
        same = (
            info is not None and self._info is not None
            and (info.url, info.room) == (self._info.url, self._info.room)
            and self._session is not None
        )  # fmt: skip
        self._info = info
        if same:
            return
        self._end_session()
        if info is None:
            self._why = why or "the room's SFU is unreachable"
            self._log.warning("room %s: no SFU: %s", self._room, self._why)
            return
        self._ready = anyio.Event()
        stop = self._stop = anyio.Event()
        self._host._spawn(lambda: self._run(info, stop))

    async def start(
        self, tracks: Iterable[MediaStreamTrack], members: Iterable[str]
    ) -> dict[str, MediaConnection]:
        """Publish ``tracks`` to the room's SFU (again after it moves); return ``{}`` (there are
        no per-member calls).  Raise :class:`NetworkError` if there is no SFU or it does not take
        them within ``Timeouts.negotiation``.  Cancelling stops waiting; publishing goes on."""
        self._tracks = check_tracks(tracks)
        limit = self._host.timeouts.negotiation
        with anyio.move_on_after(limit):
            while self._info is not None and not self._ready.is_set():
                await self._ready.wait()
        if self._info is None or not self._ready.is_set():
            raise NetworkError(f"room {self._room!r}: cannot publish: {self._why}")
        try:
            await self._publish()
        except FAILURES as exc:
            raise NetworkError(f"room {self._room!r}: publishing to the SFU failed: {exc}") from exc
        return {}

    def add(self, member: str) -> None:
        """A member joined: its feed comes through Janus's events."""

    def drop(self, member: str) -> None:
        """A member left: hang up its feeds."""
        for feed_id, feed in list(self._feeds.items()):
            if feed.member == member:
                self._host._spawn(functools.partial(self._unsubscribe, feed_id))

    def take(self, call: MediaConnection) -> None:
        """A mesh call in an SFU room (an old member's habit): refused."""
        self._host._spawn(call.close)

    async def close(self) -> None:
        """Leave Janus and close every peer connection.  Not cancellable."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            self._end_session()
            await self._close_pcs()

    # -- the session ----------------------------------------------------------

    def _end_session(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    async def _run(self, info: SfuInfo, stop: anyio.Event) -> None:
        """Join ``info``'s room and serve its events until ``stop`` or the socket closes."""
        failure: BaseException | None = None
        session: JanusSession | None = None
        timeout = self._host.timeouts.negotiation
        try:
            async with open_session(
                info.url, request_timeout=timeout, on_event=self._event, logger=self._log
            ) as session:
                try:
                    await self._join(session, info)
                except FAILURES as exc:
                    failure = exc
                else:
                    await stop.wait()
        except FAILURES as exc:
            failure = exc
        finally:
            if self._session is session:
                self._session = None
                self._ready = anyio.Event()
                with anyio.CancelScope(shield=True):
                    await self._close_pcs()
        if not stop.is_set():
            self._why = (
                f"lost the SFU at {info.url} ({failure or 'closed'}); waiting for the broker"
            )
            self._log.warning("room %s: %s", self._room, self._why)

    async def _join(self, session: JanusSession, info: SfuInfo) -> None:
        self._publisher = await session.attach()
        me = self._host.id or ""
        joined = await session.message(
            self._publisher,
            {"request": "join", "ptype": "publisher", "room": info.room, "pin": info.pin,
             "token": info.token, "id": info.id, "display": me},
        )  # fmt: skip
        self._session = session
        self._ready.set()
        self._log.info("room %s: joined the SFU at %s", self._room, info.url)
        self._publishers(joined.data.get("publishers"))
        if self._tracks is not None:
            self._host._spawn(self._republish)

    async def _republish(self) -> None:
        try:
            await self._publish()
        except FAILURES as exc:
            self._log.warning("room %s: publishing again failed: %s", self._room, exc)

    def _event(self, event: Event) -> None:
        data = event.data
        if event.kind == "event":
            self._publishers(data.get("publishers"))
            for key in ("unpublished", "leaving"):
                feed = data.get(key)
                if isinstance(feed, int) and feed in self._feeds:
                    self._host._spawn(functools.partial(self._unsubscribe, feed))
        elif event.kind == "trickle" and event.sender is not None:
            self._trickle(event.sender, data.get("candidate"))
        elif event.kind in ("hangup", "detached"):
            for feed_id, feed in list(self._feeds.items()):
                if feed.handle == event.sender:
                    self._host._spawn(functools.partial(self._unsubscribe, feed_id))

    def _publishers(self, listed: JSON) -> None:
        me = self._host.id
        for publisher in listed if isinstance(listed, list) else ():
            if not isinstance(publisher, dict):
                continue
            feed, member = publisher.get("id"), publisher.get("display")
            if not isinstance(feed, int) or not isinstance(member, str):
                continue
            if member != me and feed not in self._feeds:
                self._feeds[feed] = _Feed(member, 0)
                self._host._spawn(functools.partial(self._subscribe, feed))

    # -- peer connections ------------------------------------------------------

    def _trickle(self, handle: int, candidate: JSON) -> None:
        pc = self._ready_pcs.get(handle)
        if pc is None:
            self._trickled.setdefault(handle, []).append(candidate)
        else:
            self._host._spawn(functools.partial(self._add_candidate, pc, candidate))

    async def _described(self, handle: int, pc: RTCPeerConnection) -> None:
        """``pc`` has Janus's description: apply the candidates Janus trickled meanwhile."""
        self._ready_pcs[handle] = pc
        for candidate in self._trickled.pop(handle, []):
            await self._add_candidate(pc, candidate)

    async def _add_candidate(self, pc: RTCPeerConnection, candidate: JSON) -> None:
        if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
            return  # {"completed": true}: aioice needs no end-of-candidates
        line = candidate["candidate"].removeprefix("candidate:").strip()
        try:
            ice = _backend.get_backend("aiortc").candidate_from_line(line)
        except (ValueError, IndexError) as exc:
            self._log.warning("room %s: ignoring Janus candidate %r: %s", self._room, line, exc)
            return
        ice.sdpMid = candidate.get("sdpMid")
        ice.sdpMLineIndex = candidate.get("sdpMLineIndex")
        with contextlib.suppress(*FAILURES):
            await pc.addIceCandidate(ice)

    def _new_pc(self) -> RTCPeerConnection:
        host = self._host
        return _backend.create_peer_connection(
            "aiortc", host.configuration, host.network, remote_gone=host.timeouts.remote_gone
        )

    async def _local_jsep(self, pc: RTCPeerConnection) -> dict[str, JSON]:
        local = pc.localDescription
        sdp = _backend.get_backend("aiortc").local_sdp(local.sdp, self._host.network)
        return {"type": local.type, "sdp": sdp, "trickle": False}

    def _remote(self, jsep: JSON) -> RTCSessionDescription:
        if not isinstance(jsep, dict) or not isinstance(jsep.get("sdp"), str):
            raise ProtocolError("Janus sent no SDP")
        sdp = _backend.get_backend("aiortc").remote_sdp(jsep["sdp"], self._host.network)
        return RTCSessionDescription(sdp=sdp, type=str(jsep.get("type")))

    async def _publish(self) -> None:
        """Offer our tracks to Janus on the publisher handle and apply its answer, unless they
        are published on this session already (``room.call`` and a session's start may both
        ask).  Cancelling stops waiting for Janus; the peer connection stays until replaced."""
        async with self._publishing:
            session, tracks = self._session, self._tracks
            if session is None or tracks is None or self._published_as == (session, tracks):
                return
            await self._offer(session, tracks)
            self._published_as = (session, tracks)

    async def _offer(self, session: JanusSession, tracks: tuple[MediaStreamTrack, ...]) -> None:
        old, self._published = self._published, None
        self._published_as = None
        if old is not None:
            await old.close()
        pc = self._published = self._new_pc()
        for track in tracks:  # through the relay: closing pc must not stop the user's track
            pc.addTransceiver(self._relay.subscribe(track, buffered=False), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        kinds = {track.kind for track in tracks}
        body = {"request": "configure", "audio": "audio" in kinds, "video": "video" in kinds}
        reply = await session.message(self._publisher, body, await self._local_jsep(pc))
        await pc.setRemoteDescription(self._remote(reply.jsep))
        await self._described(self._publisher, pc)
        self._log.info("room %s: publishing %s to the SFU", self._room, ", ".join(sorted(kinds)))

    async def _subscribe(self, feed_id: int) -> None:
        session, info, feed = self._session, self._info, self._feeds.get(feed_id)
        if session is None or info is None or feed is None:
            return
        try:
            feed.handle = await session.attach()
            body = {"request": "join", "ptype": "subscriber", "room": info.room, "pin": info.pin,
                    "token": info.token, "streams": [{"feed": feed_id}]}  # fmt: skip
            offer = await session.message(feed.handle, body)
            pc = feed.pc = self._new_pc()
            tracks: list[MediaStreamTrack] = []
            pc.on("track", tracks.append)
            await pc.setRemoteDescription(self._remote(offer.jsep))
            await self._described(feed.handle, pc)
            await pc.setLocalDescription(await pc.createAnswer())
            await session.message(feed.handle, {"request": "start"}, await self._local_jsep(pc))
        except FAILURES as exc:
            self._log.warning("room %s: subscribing to %s failed: %s", self._room, feed.member, exc)
            self._feeds.pop(feed_id, None)
            return
        if self._feeds.get(feed_id) is feed:
            self._on_stream(feed.member, MediaStream(str(feed_id), tracks))

    async def _unsubscribe(self, feed_id: int) -> None:
        feed = self._feeds.pop(feed_id, None)
        if feed is None:
            return
        session = self._session
        if session is not None and feed.handle:
            with contextlib.suppress(*FAILURES):
                await session.call({"janus": "detach", "handle_id": feed.handle})
        self._ready_pcs.pop(feed.handle, None)
        if feed.pc is not None:
            await feed.pc.close()

    async def _close_pcs(self) -> None:
        pcs = [feed.pc for feed in self._feeds.values() if feed.pc is not None]
        self._feeds.clear()
        self._ready_pcs.clear()
        self._trickled.clear()
        if self._published is not None:
            pcs.append(self._published)
            self._published = None
        self._published_as = None
        for pc in pcs:
            await pc.close()
