"""What data and media connections share: one RTCPeerConnection, negotiated.

PeerJS gives every connection its own RTCPeerConnection (spec §3.1).  A
:class:`Connection` owns that peer connection and runs its side of the
offer/answer exchange: the caller sends an OFFER and applies the ANSWER; the
callee applies the OFFER and sends an ANSWER.  Trickled candidates from the
remote are held until the remote description is set (aiortc drops earlier
ones).  aiortc puts all our candidates in the SDP, so we trickle none.

Signaling messages for a connection arrive through :meth:`Connection.deliver`
into a bounded stream, and one task per connection (:meth:`Connection.run`)
applies them in order, so a slow ``setRemoteDescription`` never stalls the
broker session or other connections.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import anyio
import attrs
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from peerpy_protocol.messages import Relay, RelayType
from peerpy_protocol.payloads import (
    AnswerPayload,
    CandidatePayload,
    ConnectionType,
    IceCandidateInit,
    OfferPayload,
    Resume,
    SessionDescription,
)

from . import backends
from .diagnosis import failure_message
from .events import CONNECTION_EVENTS, EventEmitter
from .exceptions import (
    ConnectionClosedError,
    NegotiationFailedError,
    PeerError,
    ProtocolError,
    RemoteGoneError,
    UsageError,
    WebRTCError,
)
from .generation import GenerationSwitch
from .mailbox import Mailbox, MailboxClosed, MailboxFull
from .owner import Host, Owner
from .route import Route
from .stats import ConnectionStats

__all__ = ["Connection", "ConnectionArgs", "ConnectionState", "Host", "Owner", "SdpTransform"]

#: PeerJS's ``sdpTransform``: takes our SDP, returns the SDP to send.
SdpTransform = Callable[[str], str]

#: Signaling messages held for one connection before it is considered hostile.
MAX_PENDING_SIGNALS = 512


class ConnectionState(enum.Enum):
    """Where a connection is in its life."""

    NEGOTIATING = "negotiating"
    OPEN = "open"
    CLOSED = "closed"


Signal = OfferPayload | AnswerPayload | CandidatePayload


@attrs.frozen(kw_only=True)
class ConnectionArgs:
    """What every connection, data or media, is made with (see :mod:`peerpy.incoming`)."""

    #: The peer that owns the connection.
    owner: Owner
    #: Its (first) peer connection.
    pc: RTCPeerConnection
    #: The remote peer's id.
    peer: str
    #: PeerJS's connection id, the same on both sides.
    connection_id: str
    #: The JSON value the originator attached.
    metadata: Any
    #: Whether this side called ``connect()``/``call()``.
    originator: bool
    #: Where the connection logs.
    logger: logging.Logger


class Connection:
    """One PeerJS connection to a remote peer: base of data and media connections."""

    type: ClassVar[ConnectionType]
    _route: Route | None = None
    _channel: RTCDataChannel | None = None  # the data channel, or a call's auxiliary one
    _switch: GenerationSwitch | None = None  # set once both sides offered resumption
    _EVENTS: ClassVar[tuple[str, ...]] = CONNECTION_EVENTS

    def __init__(self, args: ConnectionArgs) -> None:
        #: The remote peer's id.
        self.peer = args.peer
        #: PeerJS's connection id (``dc_…`` or ``mc_…``), the same on both sides.
        self.connection_id = args.connection_id
        #: The JSON value the originator attached to the connection.
        self.metadata = args.metadata
        #: Whether this side called ``connect()``/``call()``.
        self.originator = args.originator
        owner, pc, logger = args.owner, args.pc, args.logger
        self._started_at = anyio.current_time()  # to say how long an EXPIRE took
        #: The peer connection, for advanced use: aiortc's, or on the wrtc
        #: backend ``webrtc.aiortc``'s, which has aiortc's API (see :mod:`peerpy.backends`).
        self.peer_connection = pc
        # What differs between backends goes through this object (no branches here).
        self._backend = backends.backend_of(pc)
        #: The WebRTC backend carrying this connection: ``"aiortc"`` or ``"wrtc"``.
        self.backend: backends.BackendName = self._backend.name
        self._owner = owner
        self._log = logger
        self._state = ConnectionState.NEGOTIATING
        self._closing = False  # closed on purpose: a closing channel is no loss
        self._error: PeerError | None = None
        self._opened = anyio.Event()
        self._closed = anyio.Event()
        self._remote_set = False
        self._route_wait = backends.RouteWait(lambda: None if self.closed else self._set_open())
        self._pending_candidates: list[IceCandidateInit] = []
        self._signals: Mailbox[Signal] = Mailbox(MAX_PENDING_SIGNALS)
        self._events = EventEmitter(self._EVENTS, owner._spawn, logger)
        self._watch(pc)

    def _watch(self, pc: RTCPeerConnection) -> None:
        """Follow ``pc``'s ICE state and remote; events of a replaced ``pc`` are ignored."""
        pc.on("iceconnectionstatechange", lambda: self._on_ice_state(pc))
        self._backend.watch_remote(pc, lambda silent: self._on_remote_gone(pc, silent))

    #: PeerJS's ``sdpTransform``: rewrites our offer or answer SDP before it
    #: is sent (set by ``connect``/``call``/``answer``).
    sdp_transform: SdpTransform | None = None

    def _local_sdp(self, local: RTCSessionDescription) -> SessionDescription:
        """Our description as sent: filtered by the backend, then :attr:`sdp_transform`."""
        sdp = self._backend.local_sdp(local.sdp, self._owner.network)
        if self.sdp_transform is not None:
            sdp = self.sdp_transform(sdp)
            if type(sdp) is not str:
                raise UsageError(f"sdp_transform must return the SDP as str, not {sdp!r:.60}")
        return SessionDescription(local.type, sdp)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.connection_id} to {self.peer!r} {self._state.value}>"

    # -- public state -------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether the connection is open."""
        return self._state is ConnectionState.OPEN

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (it never reopens)."""
        return self._state is ConnectionState.CLOSED

    @property
    def route(self) -> Route | None:
        """The candidate pair ICE selected (see :mod:`peerpy.route`); ``None`` until open.

        Taken when the connection opens and refreshed on each read while open
        (a later nomination shows); once closed it keeps the last route seen.
        """
        if self.open:
            self._route = self._backend.route_of(self.peer_connection) or self._route
        return self._route

    async def stats(self) -> ConnectionStats:
        """The connection's numbers now (see :mod:`peerpy.stats`); once closed, as it closed.

        Cancelling stops collecting them; the connection is unaffected.
        """
        report = await self._backend.stats_report(self.peer_connection, self._channel)
        data = self.type is ConnectionType.DATA
        return ConnectionStats.from_report(report, route=self.route, data=data)

    async def raw_stats(self) -> Mapping[str, Any]:
        """The backend's full stats report: aiortc's or libwebrtc's ``RTCStatsReport``.

        Cancelling stops collecting it; the connection is unaffected.
        """
        return await self._backend.raw_stats(self.peer_connection)

    @property
    def resumable(self) -> bool:
        """Whether this connection survives the loss of its peer connection.

        True between two peerpy peers (both with ``Timeouts.resume`` set); a
        PeerJS remote never is, nor a room's connection (see :mod:`peerpy.generation`).
        """
        return self._switch is not None

    @property
    def reconnecting(self) -> bool:
        """Whether the connection is resuming on a new peer connection."""
        return self._switch is not None and self._switch.active

    @property
    def generation(self) -> int:
        """How many times the peer connection was replaced (0: the first one)."""
        return 0 if self._switch is None else self._switch.generation

    @property
    def network_change(self) -> str | None:
        """While :attr:`reconnecting`: why it is a network change, not a dead or frozen
        remote (our address went away, the remote resumes); else ``None``."""
        switch = self._switch
        return switch.network_change if switch is not None and switch.active else None

    @property
    def error(self) -> PeerError | None:
        """Why the connection failed or closed abnormally, if it did."""
        return self._error

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Register a PeerJS-style event handler (see :mod:`peerpy.events`).

        An ``open`` handler registered on an open connection also runs at once:
        ``connect()`` returns the connection open, and PeerJS code ported line
        by line registers ``open`` after it.
        """
        replay = () if event == "open" and self.open else None
        return self._events.on(event, handler, replay=replay)

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        """Remove an event handler."""
        self._events.off(event, handler)

    async def wait_open(self) -> None:
        """Wait until the connection is open; raise why it failed if it closes first.

        Cancelling stops waiting; the connection is unaffected.
        """
        if not await self._wait_unless_closed(self._opened):
            raise self._error or ConnectionClosedError(f"Connection to {self.peer} closed.")

    async def _wait_unless_closed(self, event: anyio.Event) -> bool:
        """Wait until ``event`` is set or the connection closes; tell whether ``event`` won.

        Cancelling stops waiting.
        """
        if not event.is_set() and not self._closed.is_set():
            async with anyio.create_task_group() as tg:

                async def wait_for(other: anyio.Event) -> None:
                    await other.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(wait_for, self._closed)
                await wait_for(event)
        return event.is_set()

    async def _open_within(
        self,
        limit: float,
        start: Callable[[], Awaitable[None]],
        timed_out: Callable[[], str],
    ) -> None:
        """Run ``start`` then wait until open, all within ``limit`` seconds.

        On time-out the connection fails and closes with a
        :class:`NegotiationFailedError` saying ``timed_out()``; on any other
        error (and on cancellation) it closes too, and the error propagates.
        """
        try:
            with anyio.fail_after(limit):
                await start()
                await self.wait_open()
        except TimeoutError:
            error = NegotiationFailedError(failure_message(timed_out(), self.peer_connection))
            self._fail(error)
            await self._close()
            raise error from None
        except BaseException:
            await self._close()
            raise

    async def wait_closed(self) -> None:
        """Wait until the connection is closed.  Cancelling stops waiting."""
        await self._closed.wait()

    # -- signaling ----------------------------------------------------------

    def deliver(self, signal: Signal) -> None:
        """Queue a signaling message for :meth:`run`; never blocks."""
        try:
            self._signals.put_nowait(signal)
        except MailboxFull:
            self._fail(ProtocolError(f"{self.peer} sent too many signaling messages"))
        except MailboxClosed:
            pass

    async def run(self) -> None:
        """Apply signaling messages until the connection closes (one task each).

        Cancelling closes the connection.
        """
        try:
            while True:
                try:
                    signal = await self._signals.get()
                except MailboxClosed:
                    break
                try:
                    await self._apply(signal)
                except PeerError as exc:
                    self._fail(exc)
                except Exception as exc:  # aiortc raises assorted errors on bad SDP
                    self._fail(WebRTCError(f"applying {type(signal).__name__}: {exc}"))
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()

    async def _apply(self, signal: Signal) -> None:
        resume = getattr(signal, "resume", None)
        if isinstance(signal, OfferPayload | AnswerPayload) and resume and resume.generation:
            if self._switch is None or not self.open:
                self._log.warning("ignoring a resume %s for %s", type(signal).__name__, self)
                return
            await self._switch.on_signal(signal)
        elif isinstance(signal, CandidatePayload):
            if self._switch is not None and self._switch.take_probe(signal.candidate):
                return  # the remote's resume probe
            if self._remote_set:
                await self._add_candidate(signal.candidate)
            elif len(self._pending_candidates) < MAX_PENDING_SIGNALS:
                self._pending_candidates.append(signal.candidate)
        elif isinstance(signal, AnswerPayload):
            if not self.originator or self._remote_set:
                self._log.warning("ignoring an unexpected ANSWER for %s", self.connection_id)
                return
            self._on_answer(signal)  # first: the channel may open while it is applied
            await self._set_remote(signal.sdp)
        else:
            if self.originator or self._remote_set:
                self._log.warning("ignoring an unexpected OFFER for %s", self.connection_id)
                return
            await self._answer(signal)

    async def _set_remote(self, description: SessionDescription) -> None:
        pc = self.peer_connection
        sdp = self._backend.remote_sdp(description.sdp, self._owner.network)
        await pc.setRemoteDescription(self._backend.description(sdp, description.type))
        self._remote_set = True
        pending, self._pending_candidates = self._pending_candidates, []
        for candidate in pending:
            await self._add_candidate(candidate)

    async def _add_candidate(self, init: IceCandidateInit) -> None:
        line = init.candidate.removeprefix("candidate:").strip()
        if not line:
            return  # end-of-candidates; aioice needs no signal for it
        try:
            candidate = self._backend.candidate_from_line(line)
        except (ValueError, IndexError) as exc:
            self._log.warning("ignoring malformed candidate %r: %s", init.candidate, exc)
            return
        candidate.sdpMid = init.sdp_mid
        candidate.sdpMLineIndex = init.sdp_mline_index
        if not self._backend.remote_allowed(candidate.ip, self._owner.network):
            self._log.debug("ignoring candidate outside the allowed networks: %s", line)
            return
        await self.peer_connection.addIceCandidate(candidate)
        if self._route_wait.waiting:
            self._set_open()  # the candidate may disclose the route (wrtc)

    async def _send_offer(self, extra: dict[str, Any], resume: Resume | None = None) -> None:
        """Create the offer (gathering candidates) and send it through the broker."""
        pc = self.peer_connection
        await pc.setLocalDescription(await pc.createOffer())
        local = pc.localDescription
        payload = OfferPayload(
            sdp=self._local_sdp(local),
            type=self.type,
            connection_id=self.connection_id,
            metadata=self.metadata,
            resume=resume,
            **extra,
        )
        await self._owner._send_relay(
            Relay(RelayType.OFFER, dst=self.peer, payload=payload.to_json())
        )

    async def _send_answer(self, resume: Resume | None = None) -> None:
        """Create the answer (gathering candidates) and send it through the broker."""
        pc = self.peer_connection
        await pc.setLocalDescription(await pc.createAnswer())
        sdp = self._local_sdp(pc.localDescription)
        payload = AnswerPayload(sdp, self.type, self.connection_id, resume)
        await self._owner._send_relay(
            Relay(RelayType.ANSWER, dst=self.peer, payload=payload.to_json())
        )

    async def _answer(self, offer: OfferPayload) -> None:
        """Callee side: apply the OFFER and answer it (subclasses may defer this)."""
        await self._set_remote(offer.sdp)
        await self._send_answer()

    def _on_answer(self, answer: AnswerPayload) -> None:
        """Caller side: the ANSWER arrived; called before it is applied, so that what it
        enables (resumption's envelopes) is in place before the channel can open."""

    # -- life cycle ---------------------------------------------------------

    def _on_ice_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self.peer_connection:
            return  # a peer connection replaced by resumption
        state = pc.iceConnectionState
        self._events.emit("iceStateChanged", state)
        if state == "failed":
            failed = f"Negotiation of connection to {self.peer} failed."
            self._path_lost(NegotiationFailedError(failure_message(failed, pc)))
        elif state == "closed" and not self.closed:
            self._path_lost(None)

    def _on_remote_gone(self, pc: RTCPeerConnection, silent: float) -> None:
        # Called before ICE closes, so this error is the one reported, not
        # the channel closing or ICE failing that follow.
        if pc is not self.peer_connection:
            return
        self._path_lost(
            RemoteGoneError(
                f"remote peer {self.peer} stopped answering (no ICE consent for {silent:.1f} s)"
            )
        )

    def _path_lost(self, error: PeerError | None) -> None:
        """The peer connection failed (``error``) or closed (``None``): close.

        A resumable connection negotiates a new one instead (see :mod:`peerpy.generation`).
        """
        if self._switch is not None and self.open and not self._closing:
            error = error or ConnectionClosedError(f"the peer connection to {self.peer} closed")
            self._switch.lost(error, remote_closed=isinstance(error, ConnectionClosedError))
        elif error is None:
            self._close_soon()
        else:
            self._fail(error)

    def _attach(self, channel: RTCDataChannel) -> None:
        """Take ``channel`` as the connection's data (or auxiliary) channel."""
        self._channel = channel

    def _on_channel_open(self, channel: RTCDataChannel) -> None:
        """``channel`` opened: a new generation's resumes the connection (else the first's)."""
        if channel is not self._channel:
            return  # replaced by resumption
        if self._switch is not None and self._switch.active:
            self._switch.channel_open(channel)
        else:
            self._first_channel_open()

    def _first_channel_open(self) -> None:
        """Hook for subclasses: the first generation's channel opened."""

    def _set_open(self) -> None:
        pc, policy = self.peer_connection, self._owner.network
        opening = self._state is ConnectionState.NEGOTIATING
        if self._route_wait.needed(self._backend, pc, policy, opening=opening):
            return  # wrtc: the remote's trickled candidate will disclose the address
        refused = self._backend.route_refused(pc, policy)
        if refused is not None:
            self._fail(NegotiationFailedError(f"Connection to {self.peer} refused: {refused}"))
            return
        if self._state is ConnectionState.NEGOTIATING:
            self._route = self._backend.route_of(pc)
            self._state = ConnectionState.OPEN
            self._opened.set()
            self._events.emit("open")

    def _fail(self, error: PeerError) -> None:
        """Record why the connection ends, report it and close."""
        if self.closed:
            return
        if self._error is None:
            self._error = error
            self._log.info("connection %s to %s failed: %s", self.connection_id, self.peer, error)
            self._events.emit("error", error)
        self._close_soon()

    def _close_soon(self) -> None:
        """Make :meth:`run` finish and tear down (callable from aiortc callbacks)."""
        self._signals.close()
        self._signals.clear()

    async def _finish(self) -> None:
        """Tear the connection down once; emit ``close`` if it had opened."""
        if self.closed:
            return
        was_open = self.open
        self._state = ConnectionState.CLOSED
        self._signals.close()
        self._signals.clear()
        self._on_closing()
        self._owner._forget(self)  # closed: no longer one of the peer's connections
        await self._before_close()
        await self.peer_connection.close()
        self._closed.set()
        if was_open:
            self._events.emit("close")

    def _on_closing(self) -> None:
        """Hook for subclasses: release what they hold (streams, channels)."""

    async def _before_close(self) -> None:
        """Hook for subclasses: a last, short wait before the peer connection closes."""

    async def _close(self) -> None:
        """Close now and wait until torn down.  Not cancellable."""
        self._close_soon()
        with anyio.CancelScope(shield=True):
            await self._closed.wait()
