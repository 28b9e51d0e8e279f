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

The connection's parts: :mod:`peerpy.sending` (backpressure, the remote's
size limit), :mod:`peerpy.receiving` (decoding, the bound above), and between
two peerpy peers :mod:`peerpy.resumable` (resumption's envelopes, with
:mod:`peerpy.generation` moving to a new peer connection).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Literal, overload

import anyio
import anyio.lowlevel
import attrs
from aiortc import RTCDataChannel
from peerpy_protocol.payloads import AnswerPayload, ConnectionType, OfferPayload, Resume

from .connection import Connection, ConnectionArgs
from .events import DATA_CONNECTION_EVENTS
from .exceptions import (
    ConnectionClosedError,
    DecodeError,
    NotOpenError,
    PeerError,
    ProtocolError,
    UsageError,
)
from .mailbox import MailboxClosed
from .receiving import Receiver
from .resumable import BYE_WAIT, ResumableChannel
from .sending import Sender
from .serialization import Serializer
from .stats import ConnectionStats

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
        args: ConnectionArgs,
        *,
        label: str,
        serializer: Serializer,
        reliable: bool,
        resumable: bool = True,
    ) -> None:
        super().__init__(args)
        owner = args.owner
        #: The channel label (the connection id unless the caller chose one).
        self.label = label
        #: The serialization's wire name, as PeerJS reports it: ``"binary"``
        #: (also for the ``binary-utf8`` option), ``"json"``, ``"raw"``, ``"MsgPack"``.
        self.serialization = serializer.wire_name
        #: Whether the channel is ordered (PeerJS's ``reliable``).
        self.reliable = reliable
        self._serializer = serializer
        self._channel: RTCDataChannel | None = None
        self._receiver = Receiver(self, owner.limits.receive_buffer_bytes)
        self._close_requested = False
        # wrtc caps the high water: libwebrtc refuses sends beyond 16 MiB buffered.
        self._sender = Sender(self, self._backend.send_high_water(owner.limits.send_high_water))
        # Resumption (see peerpy.resumable), once both sides offered it.
        self._may_resume = resumable  # False: never offered (a room's connection)
        self._resumable: ResumableChannel | None = None

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
        return self._receiver.held_bytes

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
        return self._sender.waiting_frames

    @property
    def path_loss_bound(self) -> float | None:
        """Seconds a dead path may go unnoticed on a resumable connection; else ``None``.

        After this long without a message, the connection is :attr:`reconnecting`
        (or closed), so a protocol on top can wait instead of counting a silence
        as the remote gone (``Timeouts.remote_gone`` plus a second).
        """
        if self._resumable is None:
            return None
        return (self._owner.timeouts.remote_gone or 50.0) + 1.0

    @property
    def remote_silence(self) -> float | None:
        """Seconds since anything arrived from the remote of a resumable connection.

        Values and resumption's acknowledgements both count: the remote's
        peerpy acknowledges what we send even while its application sends
        nothing, so a short silence here while we send means the path and the
        remote's event loop are alive.  ``None`` on a connection that is not
        resumable, or before anything arrived.
        """
        return None if self._resumable is None else self._resumable.remote_silence

    async def stats(self) -> ConnectionStats:
        """The connection's numbers now (see :mod:`peerpy.stats`); once closed, as it closed.

        ``bytes_sent``/``bytes_received`` count the application's payload:
        each serialized message once, across resumptions, as
        ``RTCDataChannelStats`` counts a PeerJS channel.  On a resumable
        connection, resumption's own bytes (a 9-byte envelope per message,
        the acknowledgements, the *bye*, the tail sent again after a resume)
        are not in them: :meth:`raw_stats` shows every byte (the transport's
        counts; on wrtc also the current channel's).  Cancelling stops
        collecting them; the connection is unaffected.
        """
        stats = await super().stats()
        return attrs.evolve(
            stats, bytes_sent=self._sender.sent_bytes, bytes_received=self._receiver.received_bytes
        )

    # -- negotiation --------------------------------------------------------

    def _offer_fields(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "reliable": self.reliable,
            "serialization": self._serializer.wire_name,
        }

    def _resume_offer(self) -> Resume | None:
        """What we offer to resume, if ``Timeouts.resume`` and the connection allow it."""
        if self._owner.timeouts.resume is None or not self._may_resume:
            return None
        return Resume(0, self._sender.high_water)

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
        await self._send_answer(mine if self._resumable is not None else None)

    def _on_answer(self, answer: AnswerPayload) -> None:
        if answer.resume is not None and self._resume_offer() is not None:
            self._enable_resume(answer.resume.window)

    def _enable_resume(self, remote_window: int) -> None:
        self._resumable = ResumableChannel(self, remote_window, self._log)
        self._switch = self._resumable.switch

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            self._fail(ProtocolError(f"{self.peer} opened a second data channel"))
            return
        self._attach(channel)

    def _attach(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        self._backend.tune_channel(channel)  # aiortc: a cheaper SCTP send path
        limits = self._owner.limits
        channel.bufferedAmountLowThreshold = min(limits.send_low_water, self._sender.high_water)
        # Events of a channel replaced by resumption are ignored.
        channel.on("open", lambda: self._on_channel_open(channel))
        channel.on(
            "message", lambda m: self._receiver.on_message(m) if channel is self._channel else None
        )
        channel.on("bufferedamountlow", lambda: self._sender.writable.set())
        channel.on("close", lambda: self._on_channel_close(channel))
        if channel.readyState == "open":
            self._on_channel_open(channel)

    def _first_channel_open(self) -> None:
        self._set_open()

    def _on_channel_close(self, channel: RTCDataChannel) -> None:
        if channel is not self._channel:
            return
        if self._resumable is not None and self.open and not self._closing:
            self._path_lost(ConnectionClosedError(f"the data channel to {self.peer} closed"))
        else:
            self._close_soon()

    # -- receiving ----------------------------------------------------------

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
            for value in self._receiver.inbox.drain():
                self._events.emit("data", value)
        return handler

    async def recv(self) -> Any:
        """Return the next value the remote sent.

        Raise :class:`ConnectionClosedError` once the connection is closed and
        every received value was read.  Cancelling loses nothing.
        """
        try:
            return await self._receiver.inbox.get()
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
        await self._sender.send(self._serializer.encode(value))

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
                        await self._sender.wait_acknowledged()
                    for frame in self._serializer.encode_close():
                        await self._sender.send_frame(frame)
                    await self.wait_closed()
            except PeerError as exc:
                self._log.debug("flush before close failed: %s", exc)
        self._closing = True
        if self._resumable is not None and self._resumable.send_bye():
            # Give the bye time to arrive: the remote closes when it reads it.
            with anyio.move_on_after(min(self._owner.timeouts.close, BYE_WAIT)):
                await self.wait_closed()
        await self._close()

    async def _before_close(self) -> None:
        if self._resumable is not None:
            await self._resumable.flush_bye()

    def _on_closing(self) -> None:
        self._closing = True
        if self._resumable is not None:
            self._resumable.closing()
        try:
            self._serializer.finish()
        except DecodeError as exc:
            # The remote closed in the middle of a chunked or streamed message.
            self._log.warning("connection %s closed mid-message: %s", self.connection_id, exc)
            self._error = self._error or exc
        self._receiver.inbox.close()
        self._sender.writable.set()
        bye_pending = self._resumable is not None and self._resumable.bye_pending
        if self._channel is not None and not bye_pending:
            self._channel.close()

    async def __aenter__(self) -> DataConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
