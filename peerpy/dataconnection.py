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

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import anyio
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.sdp import SessionDescription as ParsedSdp
from peerpy_protocol.payloads import ConnectionType, OfferPayload

from .connection import Connection, Owner
from .exceptions import (
    ConnectionClosedError,
    DecodeError,
    MessageTooBigError,
    NotOpenError,
    PeerError,
    ProtocolError,
    UsageError,
)
from .mailbox import Mailbox, MailboxClosed, MailboxFull
from .serialization import CLOSE, Serializer

__all__ = ["DataConnection"]


class DataConnection(Connection):
    """A data connection to a remote peer (PeerJS's ``DataConnection``).

    Get one from :meth:`Peer.connect() <peerpy.Peer.connect>` or
    :meth:`Peer.accept() <peerpy.Peer.accept>`; it is open when you get it.
    Send with :meth:`send`, receive with :meth:`recv` or ``async for``.
    """

    type: ClassVar[ConnectionType] = ConnectionType.DATA
    _EVENTS: ClassVar[tuple[str, ...]] = (*Connection._EVENTS, "data")

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

    # -- negotiation --------------------------------------------------------

    async def _start_as_caller(self) -> None:
        """Make the one data channel, then send the OFFER."""
        channel = self.peer_connection.createDataChannel(self.label, ordered=self.reliable)
        self._attach(channel)
        await self._send_offer(
            {
                "label": self.label,
                "reliable": self.reliable,
                "serialization": self._serializer.wire_name,
            }
        )

    async def _answer(self, offer: OfferPayload) -> None:
        self.peer_connection.on("datachannel", self._on_datachannel)
        await super()._answer(offer)

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
        channel.on("open", self._set_open)
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._on_writable)
        channel.on("close", self._close_soon)
        if channel.readyState == "open":
            self._set_open()

    def _on_writable(self) -> None:
        self._writable.set()

    # -- receiving ----------------------------------------------------------

    def _on_message(self, message: bytes | str) -> None:
        if self.closed or self._error is not None:  # failed: decode nothing more
            return
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

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Register a PeerJS-style event handler (see :mod:`peerpy.events`).

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
        if not self.open or self._channel is None:
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
        channel = self._channel
        assert channel is not None
        while channel.bufferedAmount > self._high_water:
            self._writable = anyio.Event()
            with anyio.move_on_after(1.0):  # also notice a close while waiting
                await self._writable.wait()
            if not self.open:
                raise self._closed_error()
        if not self.open:
            raise self._closed_error()
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
        await self._close()

    def _unacknowledged(self) -> bool:
        return bool(self.buffered_amount) or self._backend.unacknowledged(self.peer_connection)

    async def _wait_acknowledged(self) -> None:
        """Wait until every byte sent so far is acknowledged by the remote's SCTP."""
        # aiortc has no event for "all acknowledged": poll its queues.
        while self.open and self._unacknowledged():  # noqa: ASYNC110
            await anyio.sleep(0.01)

    def _on_closing(self) -> None:
        try:
            self._serializer.finish()
        except DecodeError as exc:
            # The remote closed in the middle of a chunked or streamed message.
            self._log.warning("connection %s closed mid-message: %s", self.connection_id, exc)
            self._error = self._error or exc
        self._inbox.close()
        self._writable.set()
        if self._channel is not None:
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
