"""The generation switch: a resumable connection moving to a new peer connection.

When the peer connection of a resumable connection is lost (ICE failed, the
remote silent for ``Timeouts.remote_gone``, or its channel closed without a
*bye*), its :class:`GenerationSwitch`:

1. emits ``reconnecting`` (with the error that ended the path) and tells the
   connection's :class:`Carrier` (:meth:`Carrier.detach`);
2. negotiates a new peer connection through the broker, the next
   *generation*: the side that opened the connection (the originator) sends
   an OFFER carrying ``peerpyResume`` with the generation number, on a new
   peer connection carrying what the old one did (:meth:`Carrier.offer_on`),
   and tries again (backing off as ``auto_reconnect`` does) until one opens;
   the other side answers each such OFFER on a new peer connection
   (:meth:`Carrier.answer_on`), and probes the broker meanwhile so that it
   learns if the remote is gone.  When our own broker session registers
   again (it was lost with the network, see :meth:`GenerationSwitch.registered`),
   the originator offers the next generation at once: the attempt under way
   was offered, and its candidates gathered, while the network was down, and
   waiting out its ``ATTEMPT`` and the backoff would stall the connection for
   seconds after it came back;
3. once the new generation's channel opens: lets the carrier catch up
   (:meth:`Carrier.resume_on`), emits ``resumed`` and lets it go on
   (:meth:`Carrier.resumed`).

The carriers: a data connection's :class:`~peerpy.resumable.ResumableChannel`
(a data channel of the same label and ordering; the tail of
:mod:`peerpy.resumption` sent again, sends held meanwhile) and a call's
:class:`~peerpy.resumablecall.ResumableCall` (the same local tracks and an
auxiliary channel; the remote's new stream).

Evidence of a network change (:attr:`GenerationSwitch.network_change`): a
resumption started because our own address of the path went away
(:mod:`peerpy.pathloss`), or one during which the remote sent resume
signaling (a new generation's OFFER or ANSWER, or the answering side's probe,
which also tells an originator whose path still looks alive to resume at
once).  A killed or frozen remote gives none, so a protocol on top (the
transfers' silence check) can tell the two apart.

It gives up, failing the connection with
:class:`~peerpy.exceptions.ResumeFailedError`, after ``Timeouts.resume``, when
the broker says the remote is gone (EXPIRE, for :data:`ABSENT_GRACE` seconds
in a row, or at once if the remote closed its side) or when the remote
answers that it has no such connection any more.  A LEAVE from the remote
fails it at once (as any connection).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
from peerpy_protocol.messages import Relay, RelayType
from peerpy_protocol.payloads import (
    AnswerPayload,
    CandidatePayload,
    IceCandidateInit,
    OfferPayload,
    Resume,
)

from . import backends
from .backoff import backoff_delays
from .exceptions import (
    ConnectionClosedError,
    NetworkError,
    PeerError,
    PeerUnavailableError,
    ResumeFailedError,
)

if TYPE_CHECKING:
    from aiortc import RTCDataChannel, RTCPeerConnection

    from .connection import Connection
    from .icerestart import IceRestart

__all__ = [
    "ABSENT_GRACE",
    "ATTEMPT",
    "OFFLINE_CHECK",
    "PROBE_EVERY",
    "Carrier",
    "GenerationSwitch",
    "probe",
    "probed",
]

#: Seconds one generation may take to open before the originator tries the next.
ATTEMPT: Final = 8.0
#: Seconds between two looks at our broker session while it is down (the originator
#: offers no generation then: it would only queue).
OFFLINE_CHECK: Final = 1.0
#: Seconds between the answering side's probes of the remote through the broker.
PROBE_EVERY: Final = 2.0
#: Seconds the broker may say the remote is unknown before resumption gives up:
#: a remote whose own path changed may be registering again, while a killed one
#: is gone for good.  Often the broker still holds the old session, which a
#: same-token takeover replaces without a gap; but when the path died under the
#: broker's socket too (a NAT's conntrack table flushed: the broker closes the
#: session on the stray packets), the remote notices only by its ping, within
#: 1.5 x ``Timeouts.broker_gone`` (7.5 s), and then registers again.
ABSENT_GRACE: Final = 9.0
#: The ``sdpMid`` of the answering side's probe names the generation it resumes from.
_PROBE_MID: Final = "peerpy-resume-"


def probe(generation: int) -> IceCandidateInit:
    """The answering side's probe while it resumes from ``generation``: an empty candidate.

    An older peerpy ignores it (an empty candidate line); the broker answers
    EXPIRE if the remote is gone.
    """
    return IceCandidateInit("", f"{_PROBE_MID}{generation}", 0)


def probed(candidate: IceCandidateInit) -> int | None:
    """The generation a probe resumes from; ``None``: ``candidate`` is no probe."""
    mid = candidate.sdp_mid or ""
    number = mid.removeprefix(_PROBE_MID)
    if candidate.candidate or number == mid or not number.isdigit():
        return None
    return int(number)


class Carrier(Protocol):
    """What a connection of one kind carries from one generation to the next."""

    @property
    def window(self) -> int:
        """The bytes we may hold unacknowledged (``peerpyResume``'s window; 0: none)."""
        ...

    def detach(self) -> None:
        """The path is lost: stop using the old peer connection's channel and media."""

    def adopt(self, pc: RTCPeerConnection, old: RTCPeerConnection) -> None:
        """``pc`` replaces ``old`` (closed next): follow it, take back what ``old`` held."""

    def offer_on(self, pc: RTCPeerConnection) -> dict[str, Any]:
        """Originator: put on ``pc`` what the connection carries; the OFFER's own fields."""
        ...

    def answer_on(self, pc: RTCPeerConnection) -> None:
        """Answering side: the remote description is set on ``pc``; add what we send."""

    def resume_on(self, channel: RTCDataChannel) -> bool:
        """The new generation's channel opened: catch up on it; ``False``: it failed at once."""
        ...

    def resumed(self) -> None:
        """The connection resumed (``resumed`` follows): go on."""


class GenerationSwitch:
    """Moves one resumable connection to new peer connections (see the module)."""

    def __init__(self, conn: Connection, carrier: Carrier, logger: logging.Logger) -> None:
        self._conn = conn
        self._carrier = carrier
        self._log = logger
        #: The generation of the current peer connection (0: the first).
        self.generation = 0
        #: Whether a resumption is under way.
        self.active = False
        #: How many times the connection resumed.
        self.resumes = 0
        self._cause: PeerError | None = None
        self._progress = anyio.Event()  # set when an attempt opens, fails or the remote refuses
        self._registered = anyio.Event()  # set when our broker session registers again
        self._absent_since: float | None = None
        self._remote_closed = False  # the path ended with the remote closing its channel
        #: Why the current resumption is a network change rather than a dead or frozen
        #: remote (``None``: no sign of one yet; see the module).
        self.network_change: str | None = None
        #: Between two wrtc peers, ICE restarts on the same peer connection, tried
        #: first (set by a data connection's carrier; ``None``: never).
        self.ice_restart: IceRestart | None = None

    # -- events from the connection ------------------------------------------

    def lost(
        self, error: PeerError, *, remote_closed: bool = False, network_change: str | None = None
    ) -> None:
        """The current peer connection is lost: start resuming (or retry the attempt).

        ``network_change``: why we know the path died of a network change (our address gone).
        """
        if self.active:
            self._progress.set()  # this generation failed too
            return
        conn = self._conn
        self.active = True
        self.network_change = network_change
        self._cause = error
        self._remote_closed = remote_closed
        self._absent_since = None
        if self.ice_restart is None or not self.ice_restart.possible:
            self._carrier.detach()
        else:
            self.ice_restart.lost()
        self._log.info(
            "connection %s to %s lost (%s): resuming", conn.connection_id, conn.peer, error
        )
        conn._events.emit("reconnecting", error)
        conn._owner._spawn(self._run)

    def expired(self) -> None:
        """The broker said the remote is not registered (EXPIRE)."""
        now = anyio.current_time()
        if self._absent_since is None:
            self._absent_since = now
        if self._remote_closed or now - self._absent_since >= ABSENT_GRACE:
            self._conn._fail(
                PeerUnavailableError(
                    f"connection to {self._conn.peer} lost and the remote is gone from the broker"
                )
            )

    def registered(self) -> None:
        """Our broker session registered again: the originator offers a new generation now."""
        if self.active and self._conn.originator:
            self._registered.set()
            self._progress.set()  # end the attempt under way

    def nudged(self, generation: int) -> None:
        """The answering side probes while it resumes from ``generation``: its path is lost.

        An originator whose path still looks alive resumes at once instead of
        waiting for ICE to fail; a stale probe (of an older generation) is ignored.
        """
        if self.active:
            self._remote_resumes("the remote probes for a new generation")
        elif self._conn.originator and generation == self.generation:
            why = f"{self._conn.peer} lost its path"
            self.lost(NetworkError(why), network_change=why)

    def _remote_resumes(self, why: str) -> None:
        if self.network_change is None:
            self.network_change = why

    def path_gone(self, why: str) -> None:
        """Our own address of the path is gone (:mod:`peerpy.pathloss`): resume now."""
        conn = self._conn
        if conn.open and not conn._closing:
            self.lost(NetworkError(why), network_change=why)

    def take_probe(self, candidate: IceCandidateInit) -> bool:
        """Whether ``candidate`` is the remote's resume probe (then taken as a nudge)."""
        generation = probed(candidate)
        if generation is None:
            return False
        if self._conn.open:
            self.nudged(generation)
        return True

    def channel_open(self, channel: RTCDataChannel) -> None:
        """The new generation's channel opened: let the carrier catch up and go on."""
        conn = self._conn
        refused = conn._backend.route_refused(conn.peer_connection, conn._owner.network)
        if refused is not None:
            self._log.warning("resumed route refused: %s", refused)
            self._progress.set()
            return
        if not self._carrier.resume_on(channel):
            return  # closed again at once: the next generation catches up
        self.active = False
        self.resumes += 1
        self._progress.set()
        self._log.info(
            "connection %s to %s resumed (generation %d)",
            conn.connection_id,
            conn.peer,
            self.generation,
        )
        self._carrier.resumed()
        conn._events.emit("resumed")

    async def on_signal(self, signal: OfferPayload | AnswerPayload) -> None:
        """A resume OFFER (answering side) or ANSWER (originator) for this connection."""
        assert signal.resume is not None
        self._absent_since = None
        if signal.resume.ice_restart and self.ice_restart is not None:
            await self.ice_restart.on_signal(signal)
            return
        conn = self._conn
        generation = signal.resume.generation
        if isinstance(signal, AnswerPayload):
            if not conn.originator or generation != self.generation or conn._remote_set:
                return  # an answer to an attempt given up
            if signal.resume.refused:
                conn._fail(ConnectionClosedError(f"{conn.peer} closed the connection"))
                return
            self._remote_resumes(f"{conn.peer} answered generation {generation}")
            await conn._set_remote(signal.sdp)
            return
        if conn.originator or generation <= self.generation:
            return  # not ours to answer, or an OFFER overtaken by a newer one
        if not self.active:
            # The remote saw the path die first: follow it.
            self.lost(ConnectionClosedError(f"{conn.peer} resumes the connection"))
        self._remote_resumes(f"{conn.peer} offered generation {generation}")
        self.generation = generation
        pc = conn._owner._new_pc()
        self._adopt(pc)
        conn._channel = None
        pc.on("datachannel", lambda channel: self._on_datachannel(pc, channel))
        await conn._set_remote(signal.sdp)
        self._carrier.answer_on(pc)
        await conn._send_answer(Resume(generation, self._carrier.window))

    def _adopt(self, pc: RTCPeerConnection) -> None:
        """Carry the connection on over a new peer connection; the old one is closed."""
        conn = self._conn
        old = conn.peer_connection
        conn.peer_connection = pc
        conn._backend = backends.backend_of(pc)
        conn._remote_set = False
        conn._pending_candidates = []
        conn._watch(pc)
        self._carrier.adopt(pc, old)
        conn._owner._spawn(old.close)

    def _on_datachannel(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        if pc is self._conn.peer_connection and self._conn._channel is None:
            self._conn._attach(channel)

    # -- the resumption task -------------------------------------------------

    async def _run(self) -> None:
        """Resume within ``Timeouts.resume`` or fail the connection.

        Cancelled only with the peer, which closes the connection.
        """
        conn = self._conn
        limit = conn._owner.timeouts.resume
        assert limit is not None
        try:
            with anyio.fail_after(limit):
                if conn.originator:
                    await self._redial()
                else:
                    await self._await_offer()
        except TimeoutError:
            conn._fail(
                ResumeFailedError(
                    f"connection to {conn.peer} lost ({self._cause}) and not resumed "
                    f"within Timeouts.resume={limit:g} s"
                )
            )
        except PeerError as exc:
            conn._fail(exc)

    async def _wait_progress(self, limit: float) -> bool:
        """Wait up to ``limit`` s for the attempt to end; whether the connection resumed."""
        with anyio.move_on_after(limit):
            await self._conn._wait_unless_closed(self._progress)
        self._progress = anyio.Event()
        return not self.active

    async def _redial(self) -> None:
        """Originator: offer new generations until one opens."""
        conn = self._conn
        timeouts = conn._owner.timeouts
        delays = backoff_delays(timeouts.reconnect_initial, timeouts.reconnect_max)
        await self._online()
        if self.ice_restart is not None and await self.ice_restart.attempt():
            return
        # A generation whose attempt timed out may still open during the backoff: it
        # resumed then (its channel replayed the tail and sends went on over it), so stop
        # instead of superseding it with a new generation that nothing would replay on.
        while not conn.closed and self.active:
            await self._online()
            self.generation += 1
            pc = conn._owner._new_pc()
            self._adopt(pc)
            self._progress = anyio.Event()  # nothing of a superseded attempt ends this one
            self._registered = anyio.Event()
            fields = self._carrier.offer_on(pc)
            self._log.debug("offering generation %d of %s", self.generation, conn.connection_id)
            await conn._send_offer(fields, Resume(self.generation, self._carrier.window))
            if await self._wait_progress(ATTEMPT):
                return
            with anyio.move_on_after(next(delays)):
                await self._registered.wait()  # back on the network: no backoff

    async def _online(self) -> None:
        """Wait while our broker session is down (our network too, likely): an OFFER made
        now would wait in the signaling queue and reach the remote stale, after the new
        registration, which offers at once (:meth:`registered`) anyway.  Cancelling
        stops waiting."""
        conn = self._conn
        while not conn._owner.open and not conn.closed and self.active:
            self._registered = anyio.Event()
            with anyio.move_on_after(OFFLINE_CHECK):
                await self._registered.wait()

    async def _await_offer(self) -> None:
        """Answering side: answer the originator's OFFERs (routed here) until one opens.

        Meanwhile probe the remote through the broker, which answers EXPIRE
        if it is gone: an empty candidate for this connection (:func:`probe`),
        which tells an originator that has not noticed the loss to resume now;
        not while an ICE restart we answered waits for its pair (the remote is
        there, and may have resumed on it already).
        """
        conn = self._conn
        while not conn.closed:
            if self.ice_restart is None or not self.ice_restart.completing:
                payload = CandidatePayload(probe(self.generation), conn.type, conn.connection_id)
                relay = Relay(RelayType.CANDIDATE, dst=conn.peer, payload=payload.to_json())
                await conn._owner._send_relay(relay)
            if await self._wait_progress(PROBE_EVERY):
                return
