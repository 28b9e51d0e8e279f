"""PeerJS chunking of large BinaryPack messages, and its bounded reassembly.

PeerJS 1.5.5 sends a packed BinaryPack value longer than :data:`CHUNK_MTU`
(16300) bytes as several data-channel messages. Each one is itself a BinaryPack
map, keys in this order::

    {"__peerData": <message id>, "n": <index from 0>, "data": <binary slice>, "total": <count>}

Message ids count from 1 per connection. Every slice is :data:`CHUNK_MTU` bytes
except the last, which is shorter. The default channel is unordered, so chunks
may arrive in any order.

PeerJS's own reassembly trusts the sender completely. :class:`Reassembler` does
not: it checks every field and caps what a remote can make it hold, raising
:class:`~peerpy.exceptions.DecodeError` for a hostile or broken sender:

* ``total`` not an integer, below 1, or more chunks than ``max_message_bytes``
  allows; ``n`` not an integer or outside ``0 <= n < total``; ``total`` that
  changes between chunks of one message;
* a slice that is not binary, or of the wrong size (every slice but the last must
  be exactly ``chunk_size`` bytes; the last one 1 to ``chunk_size`` bytes);
* the same chunk twice, or a chunk of a message already delivered;
* more than ``max_partial_messages`` messages in progress at once, or more than
  ``max_buffered_bytes`` held in slices overall.

A message that never completes (a chunk is missing) is reported by
:meth:`Reassembler.check_complete`, to be called when the channel closes.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping
from typing import Final

from peerpy.binarypack import binary_header, pack
from peerpy.exceptions import DecodeError

__all__ = ["CHUNK_MTU", "Chunker", "Reassembler", "parse_chunk"]

#: The largest packed message PeerJS sends without chunking, and its slice size.
CHUNK_MTU: Final = 16300

_HEAD: Final = b"\x84\xba__peerData"  # fixmap of 4, then the 10-byte key
_KEY_N: Final = b"\xb1n"
_KEY_DATA: Final = b"\xb4data"
_KEY_TOTAL: Final = b"\xb5total"
_REMEMBERED_IDS: Final = 256
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_UINT_FORMS: Final = {
    0xCC: struct.Struct(">B"),
    0xCD: _U16,
    0xCE: _U32,
}  # delivered message ids kept to spot late duplicates


class Chunker:
    """Split packed BinaryPack bytes into PeerJS chunk messages.

    One instance per connection: it owns the message id counter (from 1).
    """

    def __init__(self, chunk_size: int = CHUNK_MTU) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.chunk_size: Final = chunk_size
        self._next_id = 1

    @property
    def next_id(self) -> int:
        """The message id the next call to :meth:`chunk` will use."""
        return self._next_id

    def needs_chunking(self, packed: bytes) -> bool:
        """Whether PeerJS would chunk ``packed`` (strictly longer than the MTU)."""
        return len(packed) > self.chunk_size

    def chunk(self, packed: bytes | memoryview) -> list[bytes]:
        """Return the chunk messages carrying ``packed``, in index order.

        Uses the next message id. Each returned item is one data-channel message.
        """
        size = self.chunk_size
        view = memoryview(packed)
        total = max(1, -(-len(view) // size))
        message_id = self._next_id
        self._next_id += 1
        head = _HEAD + pack(message_id) + _KEY_N
        tail = _KEY_TOTAL + pack(total)
        messages: list[bytes] = []
        for n in range(total):
            piece = view[n * size : (n + 1) * size]
            messages.append(
                b"".join((head, pack(n), _KEY_DATA, binary_header(len(piece)), piece, tail))
            )
        return messages


class _Partial:
    """The slices received so far of one chunked message."""

    __slots__ = ("received", "size", "slices", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.slices: list[bytes | memoryview | None] = [None] * total
        self.received = 0
        self.size = 0


class Reassembler:
    """Join PeerJS chunks back into packed messages, within fixed bounds."""

    def __init__(
        self,
        *,
        chunk_size: int = CHUNK_MTU,
        max_message_bytes: int,
        max_partial_messages: int,
        max_buffered_bytes: int,
    ) -> None:
        self.chunk_size: Final = chunk_size
        self.max_partial_messages: Final = max_partial_messages
        self.max_buffered_bytes: Final = max_buffered_bytes
        self.max_message_bytes = max_message_bytes
        self._partials: dict[int, _Partial] = {}
        self._buffered = 0
        self._done: deque[int] = deque(maxlen=_REMEMBERED_IDS)
        self._done_set: set[int] = set()

    @property
    def max_message_bytes(self) -> int:
        """The largest message accepted; lowering it also applies to messages in progress."""
        return self._max_message_bytes

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        if type(value) is not int or value < 1:
            raise ValueError(f"max_message_bytes must be a positive int, not {value!r}")
        self._max_message_bytes = value
        self._max_total = max(1, -(-value // self.chunk_size))

    @property
    def pending_messages(self) -> int:
        """How many chunked messages are partly received."""
        return len(self._partials)

    @property
    def buffered_bytes(self) -> int:
        """How many slice bytes are held for partly received messages."""
        return self._buffered

    def add(self, chunk: Mapping[str, object]) -> bytes | None:
        """Store one decoded chunk map; return the packed message once complete.

        Raises :class:`~peerpy.exceptions.DecodeError` if the chunk is malformed or
        breaks a bound. The message it belongs to is then dropped; other messages
        in progress are kept.
        """
        message_id = _int_field(chunk, "__peerData")
        total = _int_field(chunk, "total")
        n = _int_field(chunk, "n")
        data = chunk.get("data")
        if type(data) is not bytes:
            raise DecodeError(f"chunk data must be binary, not {type(data).__qualname__}")
        return self.add_fields(message_id, n, total, data)

    def add_fields(
        self, message_id: int, n: int, total: int, data: bytes | memoryview
    ) -> bytes | None:
        """Like :meth:`add`, with the chunk's fields already taken out of the map."""
        try:
            return self._add(message_id, n, total, data)
        except DecodeError:
            self._drop(message_id)
            raise

    def _add(self, message_id: int, n: int, total: int, data: bytes | memoryview) -> bytes | None:
        # 1. Validate the header against the bounds and the message so far.
        if message_id < 1:
            raise DecodeError(f"chunk message id must be positive, got {message_id}")
        if message_id in self._done_set:
            raise DecodeError(f"chunk for message {message_id}, which was already delivered")
        if not 1 <= total <= self._max_total:
            raise DecodeError(
                f"chunk total {total} is outside 1..{self._max_total}"
                f" (max_message_bytes={self.max_message_bytes})"
            )
        if not 0 <= n < total:
            raise DecodeError(f"chunk index {n} is outside 0..{total - 1}")
        if n < total - 1 and len(data) != self.chunk_size:
            raise DecodeError(f"chunk {n} of {total} has {len(data)} bytes, not {self.chunk_size}")
        if not 1 <= len(data) <= self.chunk_size:
            raise DecodeError(f"last chunk has {len(data)} bytes, not 1..{self.chunk_size}")
        partial = self._partials.get(message_id)
        if partial is None:
            if len(self._partials) >= self.max_partial_messages:
                raise DecodeError(
                    f"more than {self.max_partial_messages} chunked messages in progress"
                )
            partial = self._partials[message_id] = _Partial(total)
        elif partial.total != total:
            raise DecodeError(f"chunk total changed from {partial.total} to {total}")
        if partial.slices[n] is not None:
            raise DecodeError(f"duplicate chunk {n} of message {message_id}")
        if partial.size + len(data) > self.max_message_bytes:
            raise DecodeError(
                f"chunked message {message_id} exceeds {self.max_message_bytes} bytes"
            )
        if self._buffered + len(data) > self.max_buffered_bytes:
            raise DecodeError(f"partial chunked messages exceed {self.max_buffered_bytes} bytes")
        # 2. Store the slice; join the message when every slice is in.
        partial.slices[n] = data
        partial.received += 1
        partial.size += len(data)
        self._buffered += len(data)
        if partial.received < total:
            return None
        self._drop(message_id)
        if len(self._done) == self._done.maxlen:
            self._done_set.discard(self._done[0])
        self._done.append(message_id)
        self._done_set.add(message_id)
        return b"".join(partial.slices)  # type: ignore[arg-type]

    def _drop(self, message_id: int) -> None:
        partial = self._partials.pop(message_id, None)
        if partial is not None:
            self._buffered -= partial.size

    def check_complete(self) -> None:
        """Raise :class:`~peerpy.exceptions.DecodeError` if a message is incomplete.

        Call it when the channel closed: a partial message then lacks chunks that
        will never come. The partial state is dropped either way.
        """
        pending = {i: p.total - p.received for i, p in self._partials.items()}
        self.clear()
        if pending:
            missing = ", ".join(f"message {i}: {m} missing" for i, m in sorted(pending.items()))
            raise DecodeError(f"channel ended with incomplete chunked messages ({missing})")

    def clear(self) -> None:
        """Forget every partial message."""
        self._partials.clear()
        self._buffered = 0


def parse_chunk(message: bytes) -> tuple[int, int, int, memoryview] | None:
    """Read a chunk message laid out exactly as PeerJS writes it, without unpacking.

    Returns ``(message_id, n, total, data)``, or ``None`` if ``message`` is not in
    that exact layout (then decode it with :func:`~peerpy.binarypack.unpack`, which
    gives the same result or the precise error). This is the hot path of bulk
    transfers; ``data`` is a view into ``message``.
    """
    if not message.startswith(_HEAD):
        return None
    message_id, pos = _read_uint(message, len(_HEAD))
    if message_id < 1 or message[pos : pos + 2] != _KEY_N:
        return None
    n, pos = _read_uint(message, pos + 2)
    if n < 0 or message[pos : pos + 5] != _KEY_DATA:
        return None
    size, pos = _read_binary_header(message, pos + 5)
    end = pos + size
    if size < 0 or message[end : end + 6] != _KEY_TOTAL:
        return None
    total, after = _read_uint(message, end + 6)
    if total < 0 or after != len(message):
        return None
    return message_id, n, total, memoryview(message)[pos:end]


def _read_uint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a non-negative BinaryPack integer; ``(-1, pos)`` if it is another form."""
    if pos >= len(buf):
        return -1, pos
    b = buf[pos]
    if b <= 0x7F:
        return b, pos + 1
    form = _UINT_FORMS.get(b)
    if form is None or pos + 1 + form.size > len(buf):
        return -1, pos
    return form.unpack_from(buf, pos + 1)[0], pos + 1 + form.size


def _read_binary_header(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a binary header; ``(-1, pos)`` if there is none at ``pos``."""
    if pos >= len(buf):
        return -1, pos
    b = buf[pos]
    if 0xA0 <= b <= 0xAF:
        return b & 0x0F, pos + 1
    form = _U16 if b == 0xDA else _U32 if b == 0xDB else None
    if form is None or pos + 1 + form.size > len(buf):
        return -1, pos
    return form.unpack_from(buf, pos + 1)[0], pos + 1 + form.size


def _int_field(chunk: Mapping[str, object], key: str) -> int:
    value = chunk.get(key)
    if type(value) is not int:
        raise DecodeError(f"chunk field {key!r} must be an integer, not {value!r:.40}")
    return value
