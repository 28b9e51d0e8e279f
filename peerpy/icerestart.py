"""ICE restart: resuming a data connection on its own peer connection (two wrtc peers).

libwebrtc restarts ICE on a live peer connection: the next offer carries new
ICE credentials (``a=ice-ufrag``/``a=ice-pwd``) and new candidates, the
checks start over on the network as it is now, and the DTLS and SCTP
associations, so the data channel and whatever SCTP still holds, go on over
the new pair.  aiortc cannot (aiortc#211), so this is only tried when both
sides said they can: each peerpy OFFER and ANSWER of generation 0 carries
``iceRestart`` in its ``peerpyResume`` when its backend restarts ICE
(:attr:`peerpy.backends.Backend.restarts_ice`).  A PeerJS peer never gets a
resumable connection, so it never sees a restart.

When such a connection loses its path, its :class:`IceRestart` (owned by the
:class:`~peerpy.generation.GenerationSwitch`):

1. keeps the data channel attached while the connection is ``reconnecting``
   (what SCTP delivers on it is in order; sends still wait);
2. on the originator, before any new generation: takes the next generation
   number, restarts ICE and sends an OFFER with ``peerpyResume`` ``iceRestart``
   through the broker; the other side applies it to its current peer
   connection and answers the same way;
3. once libwebrtc's ICE has a working pair again (a pair of the restart, or
   the old pair once the path is seen working again: after a link outage the
   old path works again and libwebrtc may keep it; see
   :meth:`IceRestart._working_pair`), each side acknowledges what it received
   and sends its tail again on the same channel (the remote drops what SCTP
   had delivered already), and emits ``resumed``: the same peer connection, a
   new generation number;
4. if that does not happen within :data:`RESTART_ATTEMPT` seconds (or the
   channel closes, or ICE fails), the originator falls back to new peer
   connections (:mod:`peerpy.generation`), whose OFFERs the other side
   answers as ever.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import anyio
from aiortc import RTCPeerConnection
from peerpy_protocol.payloads import AnswerPayload, OfferPayload, Resume

from .exceptions import ConnectionClosedError
from .pathloss import route_gone
from .route import Route

if TYPE_CHECKING:
    from .dataconnection import DataConnection
    from .generation import GenerationSwitch

__all__ = ["RESTART_ATTEMPT", "IceRestart"]

#: Seconds an ICE restart may take, from its OFFER to a working pair, before the
#: originator makes a new peer connection instead.
RESTART_ATTEMPT: Final = 5.0
#: Seconds between two looks at libwebrtc's ICE state and selected pair during a restart.
STALE_POLL: Final = 0.05
#: Seconds a restart whose path works again (see :meth:`IceRestart._working_pair`) still
#: waits for libwebrtc to select a new pair before it resumes on the old one.
OLD_PAIR_GRACE: Final = 1.0


def _same_pair(route: Route, before: Route | None) -> bool:
    """Whether ``route`` is the pair selected before the restart (same addresses and ports)."""
    return before is not None and (route.local_address, route.remote_address) == (
        before.local_address,
        before.remote_address,
    )


class IceRestart:
    """One resumable connection's ICE restarts (see the module)."""

    def __init__(self, switch: GenerationSwitch, conn: DataConnection, logger: logging.Logger):
        self._switch = switch
        self._conn = conn
        self._log = logger
        #: Whether both sides said they can restart ICE (at generation 0).
        self.agreed = False
        #: How many times the connection resumed by an ICE restart.
        self.restarts = 0
        self._before: Route | None = None  # the pair selected when the restart began
        self._completing = 0  # negotiated restarts waiting for their working pair
        self._down_seen = False  # ICE seen disconnected since the path was lost

    def agree(self, remote: Resume) -> None:
        """The remote's ``peerpyResume`` of generation 0: restart only if both can."""
        self.agreed = remote.ice_restart and self._conn._backend.restarts_ice

    def lost(self) -> None:
        """The path is lost (the connection starts resuming): note libwebrtc's ICE state."""
        if self.agreed:
            self._down_seen = False
            self._ice_works(self._conn.peer_connection)

    def _begin(self) -> None:
        """A restart begins: note the pair it replaces and the ICE state."""
        conn = self._conn
        self._before = conn._backend.route_of(conn.peer_connection)
        self._ice_works(conn.peer_connection)

    def _ice_works(self, pc: RTCPeerConnection) -> bool:
        """Whether libwebrtc's ICE of ``pc`` works now; not working is remembered until
        the connection resumes (``_down_seen``)."""
        works = self._conn._backend.ice_connected(pc)
        self._down_seen = self._down_seen or not works
        return works

    @property
    def completing(self) -> bool:
        """Whether a negotiated restart waits for its working pair (the answering side
        does not probe meanwhile: its probe would name the generation the remote may
        have just resumed on, and make it restart again)."""
        return self._completing > 0

    @property
    def possible(self) -> bool:
        """Whether the connection may resume on its peer connection: agreed, channel open."""
        channel = self._conn._channel
        return self.agreed and channel is not None and channel.readyState == "open"

    async def attempt(self) -> bool:
        """Originator: restart ICE, within :data:`RESTART_ATTEMPT`; whether it resumed.

        Cancelling stops waiting (the peer connection stays as it is).
        """
        if not self.possible:
            return False
        conn, switch = self._conn, self._switch
        switch.generation += 1
        switch._progress = anyio.Event()
        conn._remote_set = False  # an ANSWER (or a refusal) for this generation is expected
        self._log.info(
            "restarting ICE of %s (generation %d)", conn.connection_id, switch.generation
        )
        self._begin()
        try:
            conn._backend.restart_ice(conn.peer_connection)
            await conn._send_offer(
                conn._offer_fields(),
                Resume(switch.generation, conn._sender.high_water, ice_restart=True),
            )
        except Exception as exc:  # the peer connection closed under it
            self._log.info("cannot restart ICE of %s: %s", conn.connection_id, exc)
            return False
        # A loss reported meanwhile is the old path's (its ICE state moves while the
        # restart goes on): only the channel closing ends the attempt early.
        deadline = anyio.current_time() + RESTART_ATTEMPT
        while self.possible and not conn.closed:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            if await switch._wait_progress(remaining):
                return True
        self._log.info(
            "ICE restart of %s not done in %g s: a new peer connection",
            conn.connection_id,
            RESTART_ATTEMPT,
        )
        return False

    async def on_signal(self, signal: OfferPayload | AnswerPayload) -> None:
        """An ICE-restart OFFER (answering side) or its ANSWER (originator)."""
        assert signal.resume is not None
        conn, switch = self._conn, self._switch
        generation = signal.resume.generation
        if isinstance(signal, AnswerPayload):
            if not conn.originator or generation != switch.generation or conn._remote_set:
                return  # an answer to a restart given up
            await conn._set_remote(signal.sdp)
        else:
            if conn.originator or generation <= switch.generation:
                return
            if not self.possible:
                # Its channel is gone: the originator makes a new peer connection after
                # RESTART_ATTEMPT.
                self._log.info("cannot restart ICE of %s: channel closed", conn.connection_id)
                return
            if not switch.active:
                switch.lost(ConnectionClosedError(f"{conn.peer} restarts ICE"))
            switch.generation = generation
            self._begin()
            try:
                await conn._set_remote(signal.sdp)
                await conn._send_answer(
                    Resume(generation, conn._sender.high_water, ice_restart=True)
                )
            except Exception as exc:  # the peer connection closed under it: as above
                self._log.info("cannot restart ICE of %s: %s", conn.connection_id, exc)
                return
        pc = conn.peer_connection
        self._log.debug(
            "ICE restart %d of %s negotiated: waiting for a working pair",
            generation,
            conn.connection_id,
        )
        self._completing += 1
        conn._owner._spawn(lambda: self._complete(pc, generation))

    async def _complete(self, pc: RTCPeerConnection, generation: int) -> None:
        """Resume on ``pc`` once its ICE works again (within :data:`RESTART_ATTEMPT`).

        Cancelled only with the peer.
        """
        conn, switch = self._conn, self._switch
        found = False
        try:
            with anyio.move_on_after(RESTART_ATTEMPT):
                found = await self._working_pair(pc)
        finally:
            self._completing -= 1
        if not found:
            self._log.info("ICE restart %d of %s found no working pair", generation, conn.peer)
            return  # the originator makes a new peer connection; the other side answers it
        current = pc is conn.peer_connection and switch.generation == generation
        channel = conn._channel
        if not (current and switch.active and self.possible and channel is not None):
            return  # superseded, closed, or too late (the originator makes a new one)
        switch.channel_open(channel)
        if not switch.active:
            self.restarts += 1
            self._down_seen = False

    async def _working_pair(self, pc: RTCPeerConnection) -> bool:
        """Wait for a working pair of the restart on ``pc``; ``True`` once there is one.

        Never one leaving from a host address that is no longer ours (or no
        longer the one the host reaches the remote from); a pair of the restart
        (a restart gathers new candidates, on new ports) at once; the pair
        selected before the restart only if ICE was seen disconnected since the
        loss and works again (after a link outage the old pair works again, and
        libwebrtc may keep it: its "connected" alone may be stale, the remote's
        address changed and libwebrtc not noticed yet), and then only after
        :data:`OLD_PAIR_GRACE` (libwebrtc names the new pair a moment after its
        ICE works again: ``route`` must not be the stale one).  Cancelling stops
        waiting.
        """
        backend = self._conn._backend
        works_since: float | None = None  # when the old pair was seen working again
        while True:
            route = backend.route_of(pc) if self._ice_works(pc) else None
            if route is not None and route_gone(route) is None:
                if not _same_pair(route, self._before):
                    return True
                if self._down_seen:
                    now = anyio.current_time()
                    works_since = now if works_since is None else works_since
                    if now - works_since >= OLD_PAIR_GRACE:
                        return True
            await anyio.sleep(STALE_POLL)
