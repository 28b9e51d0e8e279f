"""Resumption: what lets a data connection outlive its peer connection (sans-I/O).

Between two peerpy peers that both offered it (``peerpyResume`` in the OFFER
and ANSWER, see :class:`peerpy_protocol.payloads.Resume`), every
data-channel message of a :class:`~peerpy.dataconnection.DataConnection`
goes through one :class:`Resumption`, which gives it a sequence number and
keeps it, sent but not yet acknowledged, in the *tail*.  The receiver
acknowledges what it got; acknowledged messages leave the tail.  When the
peer connection is lost, the connection negotiates a new one (a new
*generation*) and sends the tail again; the receiver drops the messages it
already had.  So the application sees every message once, in order.

Memory: the tail holds at most ``window`` bytes (the connection's
``Limits.send_high_water``; one message more when a single one is larger):
:meth:`Resumption.room_for` says when a send must wait for acknowledgements.
The receiver holds, on an unordered channel only, the sequence numbers that
arrived ahead of a gap (at most :data:`MAX_AHEAD`).

The envelope, one data-channel message each (binary; integers big-endian)::

    0x01 seq:u64 payload   a binary message (the serializer's frame)
    0x02 seq:u64 payload   a text message, UTF-8
    0x03 cum:u64 n:u16 n*seq:u64
                           acknowledgement: every seq <= cum, and the n listed
                           (received ahead of a gap, unordered channels only)
    0x04                   bye: the sender closes on purpose (do not resume)
    0x05 seq:u64 payload   the first part of a binary message too large for the
    0x06 seq:u64 payload   remote's max-message-size with its envelope (or text)...
    0x07 seq+1:u64 payload ...and its last part, the next sequence number (or text)
    0x08 seq+1:u64 payload

Sequence numbers start at 1.  Pure code: bytes in, bytes and decisions out;
no clock, no socket (the connection times the acknowledgements).
"""

from __future__ import annotations

import collections
import struct
from typing import Final

import attrs

from .exceptions import ProtocolError

__all__ = ["ACK_BYTES", "MAX_AHEAD", "Received", "Resumption"]

# The envelope's first byte, 1 to 8 (see the module docstring).
(_DATA_BYTES, _DATA_TEXT, _ACK, _BYE) = range(1, 5)
(_FIRST_BYTES, _FIRST_TEXT, _LAST_BYTES, _LAST_TEXT) = range(5, 9)
_TEXT_KINDS: Final = frozenset((_DATA_TEXT, _FIRST_TEXT, _LAST_TEXT))
_SEQ: Final = struct.Struct(">BQ")
_ACK_HEAD: Final = struct.Struct(">BQH")
_U64: Final = struct.Struct(">Q")
#: Bytes of envelope added to each data message.
OVERHEAD: Final = _SEQ.size

#: The receiver acknowledges at least every this many bytes (less for a small window).
ACK_BYTES: Final = 256 * 1024
#: Sequence numbers an unordered receiver holds ahead of a gap before it calls
#: the remote hostile; also the most an acknowledgement lists.
MAX_AHEAD: Final = 4096
#: How far ahead of the first missing one a sequence number may be (unordered).
MAX_GAP: Final = 1 << 22


@attrs.frozen
class Received:
    """What one received envelope means for the connection."""

    #: The message to decode, ``None`` for a duplicate or a control message.
    frame: bytes | str | None = None
    #: Whether the tail shrank (an acknowledgement): waiting sends may go on.
    acked: bool = False
    #: Whether the remote closes on purpose.
    bye: bool = False


class Resumption:
    """Sequence numbers, acknowledgements, the tail and duplicate drop of one connection."""

    def __init__(self, *, window: int, ordered: bool, remote_window: int = 0) -> None:
        if window < 1:
            raise ValueError("window must be positive")
        #: The most bytes the tail holds (see :meth:`room_for`).
        self.window = window
        self.ordered = ordered
        self._ack_every = ACK_BYTES
        self.remote_window = remote_window
        # Sending.
        self._next_seq = 1
        self._tail: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._tail_bytes = 0
        # Receiving.
        self._cum = 0  # every seq <= _cum was received
        self._ahead: set[int] = set()  # received beyond a gap (unordered)
        self._unacked_bytes = 0
        self._unacked = False
        self._firsts: dict[int, bytes | str] = {}  # first parts waiting for their last
        self._lasts: dict[int, bytes | str] = {}  # last parts arrived first (unordered)

    @property
    def remote_window(self) -> int:
        """The remote's tail bound: acknowledge well before it is reached."""
        return self._remote_window

    @remote_window.setter
    def remote_window(self, value: int) -> None:
        self._remote_window = value
        self._ack_every = max(1, min(ACK_BYTES, value // 4)) if value > 0 else ACK_BYTES

    # -- sending ------------------------------------------------------------

    @property
    def tail_bytes(self) -> int:
        """Bytes sent and not yet acknowledged (envelopes included)."""
        return self._tail_bytes

    @property
    def tail_length(self) -> int:
        """Messages sent and not yet acknowledged."""
        return len(self._tail)

    @property
    def sent(self) -> int:
        """The sequence number of the last message wrapped (0: none)."""
        return self._next_seq - 1

    def room_for(self, size: int) -> bool:
        """Whether a message of ``size`` bytes fits in the tail now (always when it is empty)."""
        return not self._tail or self._tail_bytes + size + OVERHEAD <= self.window

    def wrap(self, frame: bytes | str, limit: int = 0) -> list[bytes]:
        """Number ``frame``, keep it in the tail, return the envelopes to send.

        One envelope, or two (two sequence numbers) when ``frame`` fits the
        remote's ``limit`` (its max-message-size; 0: none) only without one.
        """
        data = frame.encode() if isinstance(frame, str) else frame
        text = isinstance(frame, str)
        if not limit or len(data) + OVERHEAD <= limit:
            return [self._keep(_DATA_TEXT if text else _DATA_BYTES, data)]
        if isinstance(frame, str):
            half = len(frame) // 2
            first, last = frame[:half].encode(), frame[half:].encode()
        else:
            first, last = data[: len(data) // 2], data[len(data) // 2 :]
        return [
            self._keep(_FIRST_TEXT if text else _FIRST_BYTES, first),
            self._keep(_LAST_TEXT if text else _LAST_BYTES, last),
        ]

    def _keep(self, kind: int, data: bytes) -> bytes:
        wire = _SEQ.pack(kind, self._next_seq) + data
        self._tail[self._next_seq] = wire
        self._tail_bytes += len(wire)
        self._next_seq += 1
        return wire

    def replay(self) -> list[bytes]:
        """The tail, in order: what a new generation sends first."""
        return list(self._tail.values())

    def _acknowledged(self, cum: int, listed: list[int]) -> bool:
        if cum >= self._next_seq or any(seq >= self._next_seq for seq in listed):
            raise ProtocolError("the remote acknowledged a message never sent")
        before = self._tail_bytes
        tail = self._tail
        while tail:
            seq = next(iter(tail))
            if seq > cum:
                break
            self._tail_bytes -= len(tail.popitem(last=False)[1])
        for seq in listed:
            wire = tail.pop(seq, None)
            if wire is not None:
                self._tail_bytes -= len(wire)
        return self._tail_bytes < before

    # -- receiving ----------------------------------------------------------

    def receive(self, wire: bytes | str) -> Received:
        """Interpret one received envelope; raise :class:`ProtocolError` on garbage."""
        if not isinstance(wire, bytes) or not wire:
            raise ProtocolError("a resumable connection received a message without envelope")
        kind = wire[0]
        if _DATA_BYTES <= kind <= _DATA_TEXT or _FIRST_BYTES <= kind <= _LAST_TEXT:
            if len(wire) < _SEQ.size:
                raise ProtocolError("truncated message envelope")
            seq = _U64.unpack_from(wire, 1)[0]
            if not self._first_time(seq):
                return Received()
            self._unacked = True
            self._unacked_bytes += len(wire)
            payload: bytes | str = wire[_SEQ.size :]
            if kind in _TEXT_KINDS:
                try:
                    payload = wire[_SEQ.size :].decode()
                except UnicodeDecodeError:
                    raise ProtocolError("a text message is not UTF-8") from None
            if kind <= _DATA_TEXT:
                return Received(frame=payload)
            return Received(frame=self._join(kind, seq, payload))
        if kind == _ACK:
            if len(wire) < _ACK_HEAD.size:
                raise ProtocolError("truncated acknowledgement")
            _, cum, count = _ACK_HEAD.unpack_from(wire)
            if len(wire) != _ACK_HEAD.size + 8 * count or count > MAX_AHEAD:
                raise ProtocolError("malformed acknowledgement")
            listed = [_U64.unpack_from(wire, _ACK_HEAD.size + 8 * i)[0] for i in range(count)]
            return Received(acked=self._acknowledged(cum, listed))
        if kind == _BYE and len(wire) == 1:
            return Received(bye=True)
        raise ProtocolError(f"unknown envelope type {kind:#x}")

    def _join(self, kind: int, seq: int, part: bytes | str) -> bytes | str | None:
        """A message sent in two parts, once both arrived (in any order)."""
        if kind in (_FIRST_BYTES, _FIRST_TEXT):
            last = self._lasts.pop(seq + 1, None)
            if last is None:
                self._firsts[seq] = part
                return None
            first = part
        else:
            first_part = self._firsts.pop(seq - 1, None)
            if first_part is None:
                self._lasts[seq] = part
                return None
            first, last = first_part, part
        if type(first) is not type(last):
            raise ProtocolError("the two parts of a message differ in kind")
        return first + last  # type: ignore[operator]

    def _first_time(self, seq: int) -> bool:
        """Record ``seq`` as received; whether it is new (not a duplicate)."""
        if seq == 0:
            raise ProtocolError("sequence number 0")
        if seq <= self._cum or seq in self._ahead:
            return False
        if seq == self._cum + 1:
            self._cum = seq
            ahead = self._ahead
            while self._cum + 1 in ahead:
                self._cum += 1
                ahead.discard(self._cum)
            return True
        if self.ordered:
            raise ProtocolError(
                f"message {seq} arrived before {self._cum + 1} on an ordered channel"
            )
        if seq - self._cum > MAX_GAP or len(self._ahead) >= MAX_AHEAD:
            raise ProtocolError(f"message {seq} arrived too far ahead of {self._cum + 1}")
        self._ahead.add(seq)
        return True

    @property
    def received(self) -> int:
        """Every sequence number up to this one was received."""
        return self._cum

    def ack_due(self) -> bool:
        """Whether enough arrived unacknowledged to acknowledge now (not wait for the timer)."""
        return self._unacked_bytes >= self._ack_every

    @property
    def ack_pending(self) -> bool:
        """Whether anything received is not acknowledged yet."""
        return self._unacked

    def ack(self) -> bytes:
        """The acknowledgement of everything received so far."""
        self._unacked = False
        self._unacked_bytes = 0
        listed = sorted(self._ahead)[:MAX_AHEAD]
        return _ACK_HEAD.pack(_ACK, self._cum, len(listed)) + b"".join(
            _U64.pack(seq) for seq in listed
        )

    @staticmethod
    def bye() -> bytes:
        """The envelope saying "I close on purpose"."""
        return bytes([_BYE])
