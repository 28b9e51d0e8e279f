"""DataConnection: one PeerJS data channel, with serialization and backpressure.

A data connection is one RTCPeerConnection with exactly one data channel made
by the caller (``ordered = reliable``, label = the connection's label), as
PeerJS 1.5 does it (spec §3.3).  Values pass through the connection's
serializer (:mod:`peerpy.serialization`); the receive side keeps decoded values
in a buffer bounded in bytes until the application reads them.

The bound, ``Limits.receive_buffer_bytes``, covers everything received and not
yet read: values waiting in the buffer (each counted by the serializer's
estimate of its decoded size, not by the frame that completed it) plus what the
serializer holds for values not complete yet (chunks of a chunked message, the
partial value of a MsgPack stream). Past it the connection fails with
:class:`~peerpy.exceptions.ProtocolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Literal, overload

import anyio
import anyio.lowlevel
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.sdp import SessionDescription as ParsedSdp
from peerpy_protocol.payloads import AnswerPayload, ConnectionType, OfferPayload, Resume

from .connection import Connection, Owner, Signal
from .events import DATA_CONNECTION_EVENTS
from .exceptions import (
    ConnectionClosedError,
    DecodeError,
    MessageTooBigError,
    NotOpenError,
    PeerError,
    ProtocolError,
    UsageError,
)
from .generation import GenerationSwitch
from .mailbox import Mailbox, MailboxClosed, MailboxFull
from .resumption import Resumption
from .serialization import CLOSE, Serializer

#: Seconds an acknowledgement may wait for more messages to acknowledge with it.
ACK_DELAY = 0.05
#: Seconds ``close()`` waits for the remote to close after the *bye* of a resumable connection.
BYE_WAIT = 1.0
#: Seconds the teardown waits for a bye to leave before closing the peer connection.
BYE_FLUSH = 0.2

__all__ = ["DataConnection"]


class DataConnection(Connection):
    """A data connection to a remote peer (PeerJS's ``DataConnection``).

    Get one from :meth:`Peer.connect() <peerpy.Peer.connect>` or
    :meth:`Peer.accept() <peerpy.Peer.accept>`; it is open when you get it.
    Send with :meth:`send`, receive with :meth:`recv` or ``async for``.
    """

    type: ClassVar[ConnectionType] = ConnectionType.DATA
    _EVENTS: ClassVar[tuple[str, ...]] = DATA_CONNECTION_EVENTS

    def __init__(
        self,
        owner: Owner,
        pc: RTCPeerConnection,
        *,
        peer: str,
        connection_id: str,
        label: str,
        metadata: Any,
        serializer: Serializer,
        reliable: bool,
        originator: bool,
        logger: logging.Logger,
    ) -> None:
        super().__init__(
            owner,
            pc,
            peer=peer,
            connection_id=connection_id,
            metadata=metadata,
            originator=originator,
            logger=logger,
        )
        #: The channel label (the connection id unless the caller chose one).
        self.label = label
        #: The serialization's wire name, as PeerJS reports it: ``"binary"``
        #: (also for the ``binary-utf8`` option), ``"json"``, ``"raw"``, ``"MsgPack"``.
        self.serialization = serializer.wire_name
        #: Whether the channel is ordered (PeerJS's ``reliable``).
        self.reliable = reliable
        self._serializer = serializer
        self._channel: RTCDataChannel | None = None
        self._writable = anyio.Event()
        self._inbox: Mailbox[Any] = Mailbox(max_bytes=owner.limits.receive_buffer_bytes)
        self._close_requested = False
        self._send_limit: int | None = None  # the remote's max-message-size, once known
        # wrtc caps it: libwebrtc refuses sends beyond 16 MiB buffered.
        self._high_water = self._backend.send_high_water(owner.limits.send_high_water)
        self._waiting_frames = 0  # see buffer_size
        # Resumption (see peerpy.resumption), once both sides offered it.
        self._resume: Resumption | None = None
        self._switch: GenerationSwitch | None = None
        self._closing = False  # close() was called: a closing channel is no loss
        self._bye_sent = False
        self._bye_pending = False  # a bye sent while closing, to flush (see _before_close)
        self._ack_timer: asyncio.TimerHandle | None = None

    @property
    def data_channel(self) -> RTCDataChannel | None:
        """The data channel (aiortc's, or ``webrtc.aiortc``'s on wrtc), once there is one."""
        return self._channel

    @property
    def max_message_bytes(self) -> int:
        """The largest message (or chunked/streamed value) accepted from the remote.

        Starts at ``Limits.decoding.max_message_bytes``. Lowering it applies at
        once, also to a value in progress: a protocol can accept only small
        messages until the remote is authenticated, then raise it again.
        """
        return self._serializer.max_message_bytes

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        if type(value) is not int or value < 1:
            raise UsageError(f"max_message_bytes must be a positive int, not {value!r}")
        self._serializer.max_message_bytes = value

    @property
    def received_bytes_held(self) -> int:
        """Bytes received and not read yet, as counted against ``receive_buffer_bytes``.

        Values waiting for :meth:`recv` plus incomplete chunked/streamed values.
        """
        return self._inbox.bytes + self._serializer.held_bytes

    @property
    def buffered_amount(self) -> int:
        """Bytes queued in the data channel, not yet sent."""
        return self._channel.bufferedAmount if self._channel is not None else 0

    @property
    def buffer_size(self) -> int:
        """Messages waiting to enter the data channel (PeerJS's ``bufferSize``).

        A :meth:`send` waits while the channel holds more than
        ``Limits.send_high_water`` bytes; this counts the data-channel messages
        (chunks) that sends in progress have not handed to the channel yet,
        beside :attr:`buffered_amount`, the bytes already in the channel.
        """
        return self._waiting_frames

    @property
    def resumable(self) -> bool:
        """Whether this connection survives the loss of its peer connection.

        True between two peerpy peers (both with ``Timeouts.resume`` set); a
        PeerJS remote never is (see :mod:`peerpy.generation`).
        """
        return self._resume is not None

    @property
    def reconnecting(self) -> bool:
        """Whether the connection is resuming on a new peer connection (sends wait)."""
        return self._switch is not None and self._switch.active

    @property
    def path_loss_bound(self) -> float | None:
        """Seconds a dead path may go unnoticed on a resumable connection; else ``None``.

        After this long without a message, the connection is :attr:`reconnecting`
        (or closed), so a protocol on top can wait instead of counting a silence
        as the remote gone (``Timeouts.remote_gone`` plus a second).
        """
        if self._resume is None:
            return None
        return (self._owner.timeouts.remote_gone or 50.0) + 1.0

    @property
    def generation(self) -> int:
        """How many times the peer connection was replaced (0: the first one)."""
        return 0 if self._switch is None else self._switch.generation

    # -- negotiation --------------------------------------------------------

    def _offer_fields(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "reliable": self.reliable,
            "serialization": self._serializer.wire_name,
        }

    def _resume_offer(self) -> Resume | None:
        """What we offer to resume, if ``Timeouts.resume`` allows it."""
        return None if self._owner.timeouts.resume is None else Resume(0, self._high_water)

    async def _start_as_caller(self) -> None:
        """Make the one data channel, then send the OFFER."""
        channel = self.peer_connection.createDataChannel(self.label, ordered=self.reliable)
        self._attach(channel)
        await self._send_offer(self._offer_fields(), self._resume_offer())

    async def _answer(self, offer: OfferPayload) -> None:
        self.peer_connection.on("datachannel", self._on_datachannel)
        mine = self._resume_offer()
        if offer.resume is not None and mine is not None:
            self._enable_resume(offer.resume.window)
        await self._set_remote(offer.sdp)
        await self._send_answer(mine if self._resume is not None else None)

    def _on_answer(self, answer: AnswerPayload) -> None:
        if answer.resume is not None and self._owner.timeouts.resume is not None:
            self._enable_resume(answer.resume.window)

    def _enable_resume(self, remote_window: int) -> None:
        self._resume = Resumption(
            window=self._high_water, ordered=self.reliable, remote_window=remote_window
        )
        self._switch = GenerationSwitch(self, self._log)

    async def _apply(self, signal: Signal) -> None:
        resume = getattr(signal, "resume", None)
        if isinstance(signal, OfferPayload | AnswerPayload) and resume and resume.generation:
            if self._switch is None or not self.open:
                self._log.warning("ignoring a resume %s for %s", type(signal).__name__, self)
                return
            await self._switch.on_signal(signal)
            return
        await super()._apply(signal)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            self._fail(ProtocolError(f"{self.peer} opened a second data channel"))
            return
        self._attach(channel)

    def _attach(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        self._backend.tune_channel(channel)  # aiortc: a cheaper SCTP send path
        limits = self._owner.limits
        channel.bufferedAmountLowThreshold = min(limits.send_low_water, self._high_water)
        # Events of a channel replaced by resumption are ignored.
        channel.on("open", lambda: self._on_channel_open(channel))
        channel.on("message", lambda m: self._on_message(m) if channel is self._channel else None)
        channel.on("bufferedamountlow", self._on_writable)
        channel.on("close", lambda: self._on_channel_close(channel))
        if channel.readyState == "open":
            self._on_channel_open(channel)

    def _detach(self) -> None:
        """Resumption: the channel is lost; sends wait for the next one."""
        self._channel = None

    def _on_channel_open(self, channel: RTCDataChannel) -> None:
        if channel is not self._channel:
            return
        if self._switch is not None and self._switch.active:
            self._switch.channel_open(channel)
        else:
            self._set_open()

    def _on_channel_close(self, channel: RTCDataChannel) -> None:
        if channel is not self._channel:
            return
        if self._resume is not None and self.open and not self._closing:
            self._path_lost(ConnectionClosedError(f"the data channel to {self.peer} closed"))
        else:
            self._close_soon()

    def _path_lost(self, error: PeerError | None) -> None:
        if self._switch is not None and self.open and not self._closing:
            error = error or ConnectionClosedError(f"the peer connection to {self.peer} closed")
            self._switch.lost(error, remote_closed=isinstance(error, ConnectionClosedError))
        else:
            super()._path_lost(error)

    def _on_writable(self) -> None:
        self._writable.set()

    # -- receiving ----------------------------------------------------------

    def _on_message(self, message: bytes | str) -> None:
        if self.closed or self._error is not None:  # failed: decode nothing more
            return
        if self._resume is not None:
            frame = self._unwrap(self._resume, message)
            if frame is None:
                return
            message = frame
        try:
            values = self._serializer.decode_sized(message)
        except DecodeError as exc:
            self._fail(exc)
            return
        for value, size in values:
            if value is CLOSE:
                self._close_requested = True
                self._close_soon()
                return
            if self._events.has("data"):
                self._events.emit("data", value)
                continue
            try:
                self._inbox.put_nowait(value, size)
            except MailboxFull:
                self._fail_unread(self._inbox.bytes + size)
                return
        if self.received_bytes_held > self._inbox.max_bytes:
            self._fail_unread(self.received_bytes_held)

    def _unwrap(self, resume: Resumption, message: bytes | str) -> bytes | str | None:
        """The message inside a resumable connection's envelope; ``None``: nothing to decode."""
        try:
            got = resume.receive(message)
        except ProtocolError as exc:
            self._fail(exc)
            return None
        if got.acked:
            self._writable.set()
        if got.bye:
            self._close_requested = True
            self._close_soon()
        if got.frame is not None:
            if resume.ack_due():
                self._send_ack()
            elif self._ack_timer is None:
                self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self._send_ack)
        return got.frame

    def _send_ack(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        channel = self._channel
        if self._resume is None or channel is None or self.reconnecting:
            return  # the next generation acknowledges everything when it opens
        with contextlib.suppress(Exception):  # closing: the same
            channel.send(self._resume.ack())

    def _fail_unread(self, held: int) -> None:
        """Fail the connection: more than the receive buffer is received and unread.

        Values already queued stay readable; nothing more is decoded.
        """
        self._fail(
            ProtocolError(
                f"{held} bytes received and not read (partial values included) exceed "
                f"Limits.receive_buffer_bytes={self._inbox.max_bytes}; "
                "read faster or raise Limits.receive_buffer_bytes"
            )
        )

    @overload  # type: ignore[override]  # names typed here, any str in Connection
    def on(self, event: Literal["data"], handler: Callable[[Any], Any]) -> Callable[..., Any]: ...
    @overload
    def on(
        self, event: Literal["open", "close", "resumed"], handler: Callable[[], Any]
    ) -> Callable[..., Any]: ...
    @overload
    def on(
        self, event: Literal["error", "reconnecting"], handler: Callable[[PeerError], Any]
    ) -> Callable[..., Any]: ...
    @overload
    def on(
        self, event: Literal["iceStateChanged"], handler: Callable[[str], Any]
    ) -> Callable[..., Any]: ...
    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Register a PeerJS-style event handler (see :mod:`peerpy.events`).

        Beside PeerJS's events, a resumable connection (:attr:`resumable`)
        emits ``reconnecting`` (with the error that ended its peer connection)
        and ``resumed`` (on the new one; :attr:`route` then shows it).

        Values go to ``data`` handlers if there are any, else to :meth:`recv`.
        An ``open`` handler registered on an open connection runs at once.
        The first ``data`` handler is at once given, in order, the values that
        arrived before it and were not read, so a handler registered late (in
        a ``connection`` handler, after an ``await``) misses nothing.
        """
        first = event == "data" and not self._events.has("data")
        super().on(event, handler)
        if first:
            for value in self._inbox.drain():
                self._events.emit("data", value)
        return handler

    async def recv(self) -> Any:
        """Return the next value the remote sent.

        Raise :class:`ConnectionClosedError` once the connection is closed and
        every received value was read.  Cancelling loses nothing.
        """
        try:
            return await self._inbox.get()
        except MailboxClosed:
            raise self._closed_error() from None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedError:
                if self._error is not None and not isinstance(self._error, ConnectionClosedError):
                    raise self._error from None
                return

    def _closed_error(self) -> PeerError:
        if self._error is not None:
            return ConnectionClosedError(f"Connection to {self.peer} closed: {self._error}")
        return ConnectionClosedError(f"Connection to {self.peer} closed.")

    # -- sending ------------------------------------------------------------

    async def send(self, value: Any) -> None:
        """Serialize ``value`` and send it.

        Waits while the channel buffers more than ``Limits.send_high_water``
        bytes, until it drains below ``send_low_water``.  Raise
        :class:`NotOpenError` if the connection is not open,
        :class:`~peerpy.exceptions.EncodeError` if the serialization cannot
        carry ``value`` and :class:`MessageTooBigError` if it is too large for
        this serialization or the remote.  Cancelling may leave a chunked
        message half sent; the remote then drops the partial message.
        """
        if not self.open or (self._channel is None and not self.reconnecting):
            raise NotOpenError(
                "Connection is not open."
                if not self.closed
                else f"Connection to {self.peer} is closed: cannot send."
            )
        frames = self._serializer.encode(value)
        left = len(frames)
        self._waiting_frames += left
        try:
            for frame in frames:
                await self._send_frame(frame)
                left -= 1
                self._waiting_frames -= 1
        finally:
            self._waiting_frames -= left

    async def _send_frame(self, frame: bytes | str) -> None:
        if self._resume is not None:
            await self._send_resumable(self._resume, frame)
            return
        channel = self._channel
        assert channel is not None
        await self._wait_writable(lambda: channel.bufferedAmount > self._high_water)
        if self._send_limit is None:
            self._send_limit = remote_max_message_size(self.peer_connection)
        # aiortc 1.16 enforces the limit too; aiortc 1.15 (Python 3.10) does not.
        if self._send_limit and _wire_size(frame, self._send_limit) > self._send_limit:
            raise MessageTooBigError(
                f"a message of {_wire_size(frame, 0)} bytes exceeds the remote's "
                f"max-message-size of {self._send_limit} bytes"
            )
        try:
            channel.send(frame)
        except ValueError as exc:
            raise MessageTooBigError(str(exc)) from None
        except Exception as exc:  # aiortc raises InvalidStateError when closing
            raise self._closed_error() from exc

    async def _wait_writable(self, blocked: Callable[[], bool]) -> None:
        """Wait while ``blocked()``; raise if the connection closes.  Cancelling stops waiting."""
        while blocked():
            self._writable = anyio.Event()
            with anyio.move_on_after(1.0):  # also notice a close while waiting
                await self._writable.wait()
            if not self.open:
                raise self._closed_error()
        if not self.open:
            raise self._closed_error()

    async def _send_resumable(self, resume: Resumption, frame: bytes | str) -> None:
        """Number ``frame`` and send it; wait while resuming or while the tail is full.

        A frame sent on a peer connection that is then lost stays in the tail
        and goes again on the next one.
        """
        size = _wire_size(frame, 0)
        await self._wait_writable(lambda: self.reconnecting or not resume.room_for(size))
        if self._send_limit is None:
            self._send_limit = remote_max_message_size(self.peer_connection)
        if self._send_limit and size > self._send_limit:
            raise MessageTooBigError(
                f"a message of {size} bytes exceeds the remote's "
                f"max-message-size of {self._send_limit} bytes"
            )
        channel = self._channel
        assert channel is not None
        for wire in resume.wrap(frame, self._send_limit):
            with contextlib.suppress(Exception):  # lost with its peer connection: replayed
                channel.send(wire)

    async def close(self, *, flush: bool = False) -> None:
        """Close the connection.

        With ``flush=True``, first send PeerJS's in-band close request behind
        any data still buffered, and wait (up to ``Timeouts.close``) for the
        remote to close; otherwise close at once, dropping unsent data.
        Not cancellable once teardown starts.
        """
        if flush and self.open:
            try:
                with anyio.move_on_after(self._owner.timeouts.close):
                    if not self.reliable:
                        # On an unordered channel the close request could
                        # overtake data still in flight: wait until the remote
                        # acknowledged everything first.
                        await self._wait_acknowledged()
                    for frame in self._serializer.encode_close():
                        await self._send_frame(frame)
                    await self.wait_closed()
            except PeerError as exc:
                self._log.debug("flush before close failed: %s", exc)
        self._closing = True
        if self._send_bye():
            # Give the bye time to arrive: the remote closes when it reads it.
            with anyio.move_on_after(min(self._owner.timeouts.close, BYE_WAIT)):
                await self.wait_closed()
        await self._close()

    def _send_bye(self) -> bool:
        """Tell a resumable remote that we close on purpose (once); whether it was sent."""
        channel = self._channel
        if self._resume is None or self._bye_sent or channel is None or self.reconnecting:
            return False
        if channel.readyState != "open":
            return False
        self._bye_sent = True
        try:
            channel.send(Resumption.bye())
        except Exception:
            return False
        return True

    async def _before_close(self) -> None:
        """Let a bye sent while closing leave before the peer connection closes (0.2 s at most)."""
        if not self._bye_pending:
            return
        with anyio.move_on_after(BYE_FLUSH):
            await anyio.lowlevel.checkpoint()
            pc = self.peer_connection
            while self.buffered_amount or self._backend.unacknowledged(pc):  # noqa: ASYNC110
                await anyio.sleep(0.005)
        if self._channel is not None:
            self._channel.close()

    def _unacknowledged(self) -> bool:
        if self._resume is not None:
            return bool(self._resume.tail_length)
        return bool(self.buffered_amount) or self._backend.unacknowledged(self.peer_connection)

    async def _wait_acknowledged(self) -> None:
        """Wait until every byte sent so far is acknowledged by the remote's SCTP."""
        # aiortc has no event for "all acknowledged": poll its queues.
        while self.open and self._unacknowledged():  # noqa: ASYNC110
            await anyio.sleep(0.01)

    def _on_closing(self) -> None:
        self._closing = True
        self._bye_pending = self._send_bye()  # else the remote would resume
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        try:
            self._serializer.finish()
        except DecodeError as exc:
            # The remote closed in the middle of a chunked or streamed message.
            self._log.warning("connection %s closed mid-message: %s", self.connection_id, exc)
            self._error = self._error or exc
        self._inbox.close()
        self._writable.set()
        if self._channel is not None and not self._bye_pending:
            self._channel.close()

    async def __aenter__(self) -> DataConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def remote_max_message_size(pc: RTCPeerConnection) -> int:
    """The largest message the remote accepts, from its SDP (RFC 8841 §6).

    Its ``a=max-message-size``, 65536 when absent, 0 (no limit) when it says 0
    or there is no remote data section yet.
    """
    description = pc.remoteDescription
    if description is None:
        return 0
    for media in ParsedSdp.parse(description.sdp).media:
        if media.kind == "application":
            capabilities = media.sctpCapabilities
            return 65536 if capabilities is None else int(capabilities.maxMessageSize)
    return 0


def _wire_size(frame: bytes | str, limit: int) -> int:
    """The size of ``frame`` on the wire; a short str is not encoded to tell."""
    if isinstance(frame, bytes):
        return len(frame)
    if len(frame) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
        return len(frame)
    return len(frame.encode())
