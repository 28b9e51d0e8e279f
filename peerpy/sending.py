"""A data connection's send path: backpressure, the remote's size limit, what went out.

:class:`Sender` hands the serialized frames of one
:class:`~peerpy.dataconnection.DataConnection` to its data channel, one
data-channel message each:

- backpressure: a frame waits while the channel buffers more than
  ``high_water`` bytes (``Limits.send_high_water``, capped by the backend)
  until the channel drains below ``Limits.send_low_water``
  (``bufferedamountlow`` sets :attr:`Sender.writable`);
- the remote's ``max-message-size`` (its SDP, RFC 8841 §6): a larger frame
  raises :class:`~peerpy.exceptions.MessageTooBigError`;
- on a resumable connection each frame goes through the connection's
  :class:`~peerpy.resumable.ResumableChannel` instead, whose tail is the bound;
- it counts the frames not handed over yet (``buffer_size``) and the payload
  bytes sent (``stats()``), and tells whether the remote acknowledged
  everything (``close(flush=True)`` on an unordered channel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription as ParsedSdp

from .exceptions import MessageTooBigError
from .stats import payload_size

if TYPE_CHECKING:
    from .dataconnection import DataConnection

__all__ = ["Sender", "remote_max_message_size", "wire_size"]


class Sender:
    """Frames onto one data connection's channel (see the module docstring)."""

    def __init__(self, conn: DataConnection, high_water: int) -> None:
        self._conn = conn
        #: Bytes the channel (or the resumable tail) may hold before a send waits.
        self.high_water = high_water
        #: Set when the channel drained, an acknowledgement freed the tail, or on close.
        self.writable = anyio.Event()
        #: Frames of sends in progress not handed to the channel yet.
        self.waiting_frames = 0
        #: Payload bytes sent (each frame once, replays after a resume excluded).
        self.sent_bytes = 0
        self._limit: int | None = None  # the remote's max-message-size, once known

    async def send(self, frames: Sequence[bytes | str]) -> None:
        """Send ``frames`` in order.  Cancelling may leave some of them unsent."""
        left = len(frames)
        self.waiting_frames += left
        try:
            for frame in frames:
                await self.send_frame(frame)
                left -= 1
                self.waiting_frames -= 1
        finally:
            self.waiting_frames -= left

    async def send_frame(self, frame: bytes | str) -> None:
        """Send one frame once the channel has room.  Cancelling while waiting sends nothing."""
        conn = self._conn
        if conn._resumable is not None:
            await conn._resumable.send(frame, wire_size(frame, 0))
            self.sent_bytes += payload_size(frame)
            return
        channel = conn._channel
        assert channel is not None
        await self.wait_writable(lambda: channel.bufferedAmount > self.high_water)
        self.check_size(frame)
        try:
            channel.send(frame)
        except ValueError as exc:
            raise MessageTooBigError(str(exc)) from None
        except Exception as exc:  # aiortc raises InvalidStateError when closing
            raise conn._closed_error() from exc
        self.sent_bytes += payload_size(frame)

    async def wait_writable(self, blocked: Callable[[], bool]) -> None:
        """Wait while ``blocked()``; raise if the connection closes.  Cancelling stops waiting."""
        conn = self._conn
        while blocked():
            self.writable = anyio.Event()
            with anyio.move_on_after(1.0):  # also notice a close while waiting
                await self.writable.wait()
            if not conn.open:
                raise conn._closed_error()
        if not conn.open:
            raise conn._closed_error()

    def check_size(self, frame: bytes | str, size: int | None = None) -> int:
        """Raise :class:`MessageTooBigError` if ``frame`` (``size`` bytes, when known) is
        over the remote's max-message-size; return that limit (0: none)."""
        if self._limit is None:
            self._limit = remote_max_message_size(self._conn.peer_connection)
        limit = self._limit
        # aiortc 1.16 enforces the limit too; aiortc 1.15 (Python 3.10) does not.
        if limit and (wire_size(frame, limit) if size is None else size) > limit:
            raise MessageTooBigError(
                f"a message of {wire_size(frame, 0) if size is None else size} bytes "
                f"exceeds the remote's max-message-size of {limit} bytes"
            )
        return limit

    def unacknowledged(self) -> bool:
        """Whether something sent is not acknowledged by the remote yet."""
        conn = self._conn
        if conn._resumable is not None:
            return bool(conn._resumable.resume.tail_length)
        return bool(conn.buffered_amount) or conn._backend.unacknowledged(conn.peer_connection)

    async def wait_acknowledged(self) -> None:
        """Wait until every byte sent so far is acknowledged by the remote.

        Cancelling stops waiting.
        """
        # aiortc has no event for "all acknowledged": poll its queues.
        while self._conn.open and self.unacknowledged():  # noqa: ASYNC110
            await anyio.sleep(0.01)


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


def wire_size(frame: bytes | str, limit: int) -> int:
    """The size of ``frame`` on the wire; a str short for ``limit`` is not encoded to tell."""
    if isinstance(frame, bytes):
        return len(frame)
    if len(frame) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
        return len(frame)
    return len(frame.encode())
