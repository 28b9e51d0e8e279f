"""A resumable data connection's messages on its current data channel (the I/O of resumption).

Once both sides offered resumption, a :class:`~peerpy.dataconnection.DataConnection`
sends and receives through one :class:`ResumableChannel`, which applies the
pure :class:`~peerpy.resumption.Resumption` to whichever data channel the
connection has now:

- sending: waits while the connection resumes or while the tail is full, then
  numbers the frame, keeps it in the tail and sends its envelope(s); an
  envelope lost with its peer connection goes again on the next one
  (:mod:`peerpy.generation` replays the tail);
- receiving: takes each envelope off, drops duplicates, notes when the remote
  was last heard, and acknowledges (at once when enough arrived, else
  :data:`ACK_DELAY` seconds after a message, so that acknowledgements come in
  batches);
- closing: says *bye* once, so that the remote closes instead of resuming, and
  gives it up to :data:`BYE_FLUSH` seconds to leave before the peer connection
  closes.

It also owns the connection's :class:`~peerpy.generation.GenerationSwitch`,
whose :class:`~peerpy.generation.Carrier` it is: each new generation gets a
data channel of the same label and ordering, acknowledges what arrived and
sends the tail again (the remote drops what it already had).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel

from .exceptions import ProtocolError
from .generation import GenerationSwitch
from .resumption import Resumption

if TYPE_CHECKING:
    from aiortc import RTCDataChannel, RTCPeerConnection

    from .dataconnection import DataConnection

__all__ = ["ACK_DELAY", "BYE_FLUSH", "BYE_WAIT", "ResumableChannel"]

#: Seconds an acknowledgement may wait for more messages to acknowledge with it.
ACK_DELAY: Final = 0.05
#: Seconds ``close()`` waits for the remote to close after the *bye* of a resumable connection.
BYE_WAIT: Final = 1.0
#: Seconds the teardown waits for a bye to leave before closing the peer connection.
BYE_FLUSH: Final = 0.2


class ResumableChannel:
    """Resumption applied to one connection's current data channel (see the module)."""

    def __init__(self, conn: DataConnection, remote_window: int, logger: logging.Logger) -> None:
        self._conn = conn
        #: Sequence numbers, the tail and duplicate drop (pure).
        self.resume = Resumption(
            window=conn._sender.high_water, ordered=conn.reliable, remote_window=remote_window
        )
        #: Moves the connection to new peer connections.
        self.switch = GenerationSwitch(conn, self, logger)
        self._log = logger
        self._ack_timer: asyncio.TimerHandle | None = None
        self._heard_at: float | None = None  # when the remote's last envelope arrived
        self._bye_sent = False
        #: A bye sent while closing, to flush before the peer connection closes.
        self.bye_pending = False

    @property
    def reconnecting(self) -> bool:
        """Whether the connection is resuming on a new peer connection."""
        return self.switch.active

    @property
    def remote_silence(self) -> float | None:
        """Seconds since the remote's last envelope (values or acknowledgements); ``None``: none."""
        return None if self._heard_at is None else time.monotonic() - self._heard_at

    # -- receiving ----------------------------------------------------------

    def receive(self, message: bytes | str) -> bytes | str | None:
        """The message inside an envelope; ``None``: nothing to decode (or a bad envelope)."""
        conn = self._conn
        try:
            got = self.resume.receive(message)
        except ProtocolError as exc:
            conn._fail(exc)
            return None
        self._heard_at = time.monotonic()
        if got.acked:
            conn._sender.writable.set()
        if got.bye:
            conn._close_requested = True
            conn._close_soon()
        if got.frame is not None:
            if self.resume.ack_due():
                self.send_ack()
            elif self._ack_timer is None:
                self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self.send_ack)
        return got.frame

    def send_ack(self) -> None:
        """Acknowledge everything received so far, on the current channel (if there is one)."""
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        channel = self._conn._channel
        if channel is None or self.reconnecting:
            return  # the next generation acknowledges everything when it opens
        with contextlib.suppress(Exception):  # closing: the same
            channel.send(self.resume.ack())

    # -- sending ------------------------------------------------------------

    async def send(self, frame: bytes | str, size: int) -> None:
        """Number ``frame`` (``size`` bytes) and send it; wait while resuming or the tail is full.

        A frame sent on a peer connection that is then lost stays in the tail
        and goes again on the next one.  Raise what
        :meth:`~peerpy.sending.Sender.check_size` raises.  Cancelling while
        waiting sends nothing.
        """
        conn, resume = self._conn, self.resume
        await conn._sender.wait_writable(lambda: self.reconnecting or not resume.room_for(size))
        limit = conn._sender.check_size(frame, size)
        channel = conn._channel
        assert channel is not None
        for wire in resume.wrap(frame, limit):
            with contextlib.suppress(Exception):  # lost with its peer connection: replayed
                channel.send(wire)

    # -- the generation switch's carrier ------------------------------------

    @property
    def window(self) -> int:
        """The send high-water mark: what we keep unacknowledged at most."""
        return self._conn._sender.high_water

    def detach(self) -> None:
        """The channel is lost: sends wait for the next one."""
        self._conn._channel = None

    def adopt(self, pc: RTCPeerConnection, old: RTCPeerConnection) -> None:
        """Nothing to take back from ``old``: the tail is ours."""

    def offer_on(self, pc: RTCPeerConnection) -> dict[str, Any]:
        """A data channel of the same label and ordering on ``pc``; the OFFER's fields."""
        conn = self._conn
        conn._attach(pc.createDataChannel(conn.label, ordered=conn.reliable))
        return conn._offer_fields()

    def answer_on(self, pc: RTCPeerConnection) -> None:
        """Nothing to add: the originator makes the channel."""

    def resume_on(self, channel: RTCDataChannel) -> bool:
        """Acknowledge what arrived and send the tail again; whether the channel took it."""
        tail = self.resume.replay()
        try:
            channel.send(self.resume.ack())
            for wire in tail:
                channel.send(wire)
        except Exception as exc:  # closed again at once: the next generation replays
            self._log.debug("replay on generation %d failed: %s", self.switch.generation, exc)
            return False
        self._log.debug("%d messages replayed", len(tail))
        return True

    def resumed(self) -> None:
        """Let the held sends go on."""
        self._conn._sender.writable.set()

    # -- closing ------------------------------------------------------------

    def send_bye(self) -> bool:
        """Tell the remote that we close on purpose (once); whether it was sent."""
        channel = self._conn._channel
        if self._bye_sent or channel is None or self.reconnecting:
            return False
        if channel.readyState != "open":
            return False
        self._bye_sent = True
        try:
            channel.send(Resumption.bye())
        except Exception:
            return False
        return True

    def closing(self) -> None:
        """The connection tears down: say bye (else the remote would resume), stop acknowledging."""
        self.bye_pending = self.send_bye()
        if self._ack_timer is not None:
            self._ack_timer.cancel()

    async def flush_bye(self) -> None:
        """Let a bye sent while closing leave, then close the channel (0.2 s at most).

        Not cancellable in effect: called shielded by the teardown.
        """
        if not self.bye_pending:
            return
        conn = self._conn
        with anyio.move_on_after(BYE_FLUSH):
            await anyio.lowlevel.checkpoint()
            pc = conn.peer_connection
            while conn.buffered_amount or conn._backend.unacknowledged(pc):  # noqa: ASYNC110
                await anyio.sleep(0.005)
        if conn._channel is not None:
            conn._channel.close()
