"""Data-channel serializations of PeerJS 1.5.5, without I/O.

A :class:`Serializer` turns the values a user sends into the data-channel
messages to send, and the messages received back into values. There is one
instance per connection: it holds the chunk message counter, partial chunked
messages and the MsgPack stream. Pick one with :func:`create_serializer` (by
the ``serialization`` option name) or :func:`serializer_for_wire_name` (by the
name in a received OFFER).

=============== ========== ==========================================================
option          wire name  format
=============== ========== ==========================================================
``binary``      binary     BinaryPack (:mod:`peerpy.binarypack`), chunked above 16300
``binary-utf8`` binary     the same as ``binary`` in PeerJS 1.5
``json``        json       UTF-8 JSON in binary frames; refused at >= 16300 bytes
``raw``         raw        ``str`` as text frames, bytes as binary frames, untouched
``MsgPack``     MsgPack    a msgpack byte stream cut into <= 32 KiB messages
=============== ========== ==========================================================

:meth:`Serializer.decode` returns :data:`CLOSE` when the remote sent PeerJS's
in-band close request ``{"__peerData": {"type": "close"}}``. Errors: values that
cannot be sent raise :class:`~peerpy.exceptions.EncodeError` (or
:class:`~peerpy.exceptions.MessageTooBigError`); received data that does not
decode, or breaks a :class:`Limits` bound, raises
:class:`~peerpy.exceptions.DecodeError`.

Memory: what a received value decodes into is bounded across the *whole*
value. Every decoded object (the value itself, each array item, map key and map
value at any depth) is counted against :attr:`Limits.max_objects`, before the
objects are built where the format allows it (BinaryPack reads the item counts
from the headers; JSON is pre-counted from its punctuation; MsgPack is counted
by hooks as each container completes, with per-container sizes capped before
msgpack preallocates them). :meth:`Serializer.decode_sized` reports each
value's accounted size, ``encoded bytes + OBJECT_COST * objects`` (a Python
object costs 56-72 bytes; one byte can encode one), and
:attr:`Serializer.held_bytes` what incomplete values hold, so that the
connection can bound everything received and not yet read.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol, cast

import attrs
import msgpack  # type: ignore[import-untyped]

from peerpy.binarypack import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_OBJECTS,
    MAX_SAFE_INTEGER,
    pack,
    string_key,
    unpack_counted,
)
from peerpy.chunking import CHUNK_MTU, Chunker, Reassembler, parse_chunk
from peerpy.exceptions import DecodeError, EncodeError, MessageTooBigError, UsageError

__all__ = [
    "CLOSE",
    "JSON_MAX_BYTES",
    "MSGPACK_SLICE_BYTES",
    "OBJECT_COST",
    "SERIALIZATIONS",
    "BinarySerializer",
    "JsonSerializer",
    "Limits",
    "MsgPackSerializer",
    "RawSerializer",
    "Serializer",
    "SerializerFactory",
    "check_factories",
    "create_serializer",
    "serializer_for_wire_name",
]

#: PeerJS 1.5 refuses to send a JSON message of this many encoded bytes or more.
JSON_MAX_BYTES: Final = 16300
#: PeerJS's MsgPack serializer cuts its byte stream into messages of at most this size.
MSGPACK_SLICE_BYTES: Final = 32768
#: Bytes accounted per decoded object (about what CPython takes for an empty
#: list or dict and its slot in the parent), on top of the encoded bytes.
OBJECT_COST: Final = 64


class _CloseRequest:
    """Type of :data:`CLOSE`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "peerpy.serialization.CLOSE"


#: Returned by :meth:`Serializer.decode` when the remote asked to close.
CLOSE: Final[object] = _CloseRequest()

_CLOSE_VALUE: Final = {"__peerData": {"type": "close"}}


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise UsageError(f"Limits.{attribute.name} must be a positive int, not {value!r}")


@attrs.frozen
class Limits:
    """Caps on what a remote can make a serializer decode or hold."""

    #: The largest message accepted: one data-channel message, a reassembled
    #: chunked message, or one value of a MsgPack stream.
    max_message_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    #: How many chunked messages may be in progress at once.
    max_partial_messages: int = attrs.field(default=32, validator=_positive)
    #: How many bytes partial chunked messages may hold together.
    max_buffered_bytes: int = attrs.field(default=128 * 1024 * 1024, validator=_positive)
    #: How deeply arrays and maps may nest (also applied when encoding).
    max_depth: int = attrs.field(default=DEFAULT_MAX_DEPTH, validator=_positive)
    #: The most items one array or map may declare (msgpack preallocates them).
    max_items: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)
    #: The most objects one received value may decode into, counted across the
    #: whole value: the value itself and every array item, map key and map
    #: value at any depth. Caps a value's Python memory near
    #: ``OBJECT_COST * max_objects`` (64 MiB) plus its encoded bytes.
    max_objects: int = attrs.field(default=DEFAULT_MAX_OBJECTS, validator=_positive)


class Serializer(Protocol):
    """One connection's serialization state."""

    #: The option name asked for (``"binary"``, ``"binary-utf8"``, ``"json"``, ...).
    name: str
    #: The name to put in the OFFER payload's ``serialization`` field.
    wire_name: str
    #: Whether the channel must be reliable (ordered): True for MsgPack.
    reliable_required: bool
    #: The largest message (or reassembled/streamed value) accepted from now
    #: on; starts at ``Limits.max_message_bytes`` and may be lowered at any
    #: time, e.g. to accept only small messages before a handshake is done.
    max_message_bytes: int

    @property
    def held_bytes(self) -> int:
        """Bytes held for values not complete yet (chunks, a MsgPack partial)."""
        ...

    def encode(self, value: object) -> list[bytes | str]:
        """Return the data-channel messages that carry ``value``, in order."""
        ...

    def encode_close(self) -> list[bytes | str]:
        """Return the messages of PeerJS's in-band close request."""
        ...

    def decode(self, message: bytes | str) -> list[object]:
        """Feed one received message; return the values it completes (maybe none)."""
        ...

    def decode_sized(self, message: bytes | str) -> list[tuple[object, int]]:
        """Like :meth:`decode`, each value with its accounted size in bytes."""
        ...

    def finish(self) -> None:
        """The channel closed: raise DecodeError if a value was left incomplete."""
        ...


# ------------------------------------------------------------------ shared helpers


def _js_truthy(value: object) -> bool:
    """JavaScript truthiness (empty containers are truthy, ``NaN`` is not)."""
    if value is None or value is False:
        return False
    if type(value) is int or type(value) is float:
        return value == value and value != 0
    if type(value) is str:
        return value != ""
    return True


def _is_close(value: object) -> bool:
    """PeerJS's test: ``value.__peerData?.type === "close"``."""
    if type(value) is not dict:
        return False
    control = value.get("__peerData")
    return type(control) is dict and control.get("type") == "close"


def _binary_frame(message: bytes | str, max_message_bytes: int, name: str) -> bytes:
    if isinstance(message, str):
        raise DecodeError(f"{name} serialization expects binary frames, got a text frame")
    if len(message) > max_message_bytes:
        raise DecodeError(f"message of {len(message)} bytes exceeds {max_message_bytes}")
    return message if type(message) is bytes else bytes(message)


def _over_objects(max_objects: int) -> DecodeError:
    return DecodeError(
        f"value decodes into more than Limits.max_objects={max_objects} objects"
        " (arrays, maps and their items, counted across the whole value)"
    )


def _plain(value: object, depth: int, max_depth: int, *, msgpack_types: bool) -> object:
    """Check ``value`` for json/msgpack; return it with tuples and int keys converted.

    Subclasses of the supported types (``IntEnum``, ``StrEnum``...) become the base type.
    """
    if value is None or type(value) is str or type(value) is float or type(value) is bool:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise EncodeError(f"integer {value} is outside ±(2**53 - 1), which JS cannot hold")
        return int(value)
    if isinstance(value, (str, float)):
        return str.__str__(value) if isinstance(value, str) else float(value)
    if isinstance(value, (list, tuple, dict)):
        if depth >= max_depth:
            raise EncodeError(f"value nests deeper than {max_depth} arrays/maps (or is cyclic)")
        if isinstance(value, dict):
            return {
                string_key(k, value): _plain(v, depth + 1, max_depth, msgpack_types=msgpack_types)
                for k, v in value.items()
            }
        return [_plain(v, depth + 1, max_depth, msgpack_types=msgpack_types) for v in value]
    if msgpack_types and isinstance(value, (bytes, bytearray, memoryview)):
        return value if type(value) is bytes else bytes(value)
    if msgpack_types and isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise EncodeError("MsgPack needs timezone-aware datetimes (a JS Date is an instant)")
        return value
    raise EncodeError(f"cannot encode a value of type {type(value).__qualname__}")


def _json_object_bound(data: bytes) -> int:
    """An upper bound on the objects a JSON text decodes into, from its punctuation.

    An array of k items has k - 1 commas; a map of k pairs (2k objects) has k
    colons and k - 1 commas; so every container's slots are at most its commas,
    colons and 1. Punctuation inside strings only makes the bound larger.
    """
    opened = data.count(b"[") + data.count(b"{")
    if not opened:
        return 1
    return 1 + opened + data.count(b",") + data.count(b":")


def _count_objects(value: object) -> int:
    """The objects in a decoded value: itself and every item, key and value inside."""
    if type(value) is not list and type(value) is not dict:
        return 1
    count = 1
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        children: Iterable[object]
        if type(item) is dict:
            count += 2 * len(item)
            children = item.values()
        else:
            children = cast("list[object]", item)
            count += len(children)
        for child in children:
            if type(child) is list or type(child) is dict:
                stack.append(child)
    return count


def _check_depth(value: object, max_depth: int) -> None:
    """Raise DecodeError if ``value`` nests more than ``max_depth`` containers."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else cast("list[object]", item)
        if level > max_depth:
            raise DecodeError(f"value nests deeper than {max_depth} arrays/maps")
        for child in children:
            if type(child) is list or type(child) is dict:
                stack.append((child, level + 1))


# --------------------------------------------------------------------- serializers


class BinarySerializer:
    """``binary`` / ``binary-utf8``: BinaryPack, chunked above 16300 bytes."""

    wire_name: str = "binary"
    reliable_required: bool = False

    def __init__(self, name: str = "binary", *, limits: Limits | None = None) -> None:
        self.name = name
        self.limits = limits or Limits()
        self._chunker = Chunker(CHUNK_MTU)
        self._reassembler = Reassembler(
            chunk_size=CHUNK_MTU,
            max_message_bytes=self.limits.max_message_bytes,
            max_partial_messages=self.limits.max_partial_messages,
            max_buffered_bytes=self.limits.max_buffered_bytes,
        )

    @property
    def held_bytes(self) -> int:
        """Bytes of chunks held for chunked messages not complete yet."""
        return self._reassembler.buffered_bytes

    @property
    def max_message_bytes(self) -> int:
        """The largest message or reassembled chunked message accepted.

        Lowering it applies to the chunked messages in progress too (see
        :class:`~peerpy.chunking.Reassembler`).
        """
        return self._reassembler.max_message_bytes

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        self._reassembler.max_message_bytes = value

    def encode(self, value: object) -> list[bytes | str]:
        """Pack ``value``; chunk it if it packs to more than 16300 bytes."""
        if type(value) is dict and _js_truthy(value.get("__peerData")):
            raise EncodeError("a top-level map with a '__peerData' key is reserved by PeerJS")
        packed = pack(value, max_depth=self.limits.max_depth)
        if not self._chunker.needs_chunking(packed):
            return [packed]
        return list(self._chunker.chunk(packed))

    def encode_close(self) -> list[bytes | str]:
        """The close request: ``81 ba __peerData 81 b4 type b5 close``."""
        return [pack(_CLOSE_VALUE)]

    def decode(self, message: bytes | str) -> list[object]:
        """Unpack one message; chunks are held until their message is complete."""
        return [value for value, _ in self.decode_sized(message)]

    def decode_sized(self, message: bytes | str) -> list[tuple[object, int]]:
        """Like :meth:`decode`, each value with its accounted size."""
        data = _binary_frame(message, self.max_message_bytes, self.name)
        fields = parse_chunk(data)  # fast path for chunks in PeerJS's exact layout
        if fields is not None:
            packed = self._reassembler.add_fields(*fields)
        else:
            value, size = self._unpack(data)
            if type(value) is not dict or not _js_truthy(value.get("__peerData")):
                return [(value, size)]
            if _is_close(value):
                return [(CLOSE, 0)]
            packed = self._reassembler.add(value)
        if packed is None:
            return []
        whole, size = self._unpack(packed)
        if _is_close(whole):
            return [(CLOSE, 0)]
        if type(whole) is dict and _js_truthy(whole.get("__peerData")):
            raise DecodeError("a reassembled chunked message is itself a chunk")
        return [(whole, size)]

    def _unpack(self, data: bytes) -> tuple[object, int]:
        limits = self.limits
        value, objects = unpack_counted(
            data,
            max_depth=limits.max_depth,
            max_items=limits.max_items,
            max_objects=limits.max_objects,
        )
        return value, len(data) + OBJECT_COST * objects

    def finish(self) -> None:
        """Raise DecodeError if a chunked message is missing chunks."""
        self._reassembler.check_complete()


class _Unchunked:
    """A serializer whose every message stands alone: nothing is held between them."""

    reliable_required: bool = False

    #: Nothing is held between messages.
    held_bytes: int = 0

    def __init__(self, *, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.max_message_bytes = self.limits.max_message_bytes

    def decode(self, message: bytes | str) -> list[object]:
        """The value of one message (see :meth:`decode_sized`)."""
        return [value for value, _ in self.decode_sized(message)]

    def decode_sized(self, message: bytes | str) -> list[tuple[object, int]]:
        """The value of one message, with its accounted size."""
        raise NotImplementedError

    def finish(self) -> None:
        """Nothing can be left incomplete."""


class JsonSerializer(_Unchunked):
    """``json``: compact UTF-8 JSON in binary frames (PeerJS 1.5 rules)."""

    name: str = "json"
    wire_name: str = "json"

    def encode(self, value: object) -> list[bytes | str]:
        """Encode ``value``; MessageTooBigError if it takes 16300 bytes or more."""
        if _is_close(value):
            raise EncodeError("the map {'__peerData': {'type': 'close'}} is PeerJS's close request")
        plain = _plain(value, 0, self.limits.max_depth, msgpack_types=False)
        try:
            text = json.dumps(plain, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            data = text.encode("utf-8")
        except ValueError as exc:  # nan/inf, lone surrogates
            raise EncodeError(f"JSON cannot carry this value: {exc}") from None
        if len(data) >= JSON_MAX_BYTES:
            raise MessageTooBigError(
                f"JSON message of {len(data)} bytes; PeerJS refuses {JSON_MAX_BYTES} or more"
            )
        return [data]

    def encode_close(self) -> list[bytes | str]:
        """The close request: ``{"__peerData":{"type":"close"}}``."""
        return [json.dumps(_CLOSE_VALUE, separators=(",", ":")).encode()]

    def decode_sized(self, message: bytes | str) -> list[tuple[object, int]]:
        """Parse one JSON message: its value with its accounted size.

        A leading BOM is skipped, like TextDecoder.  A message whose punctuation
        allows more than ``Limits.max_objects`` objects is refused before parsing
        (PeerJS sends no JSON of 16300 bytes or more, so no PeerJS message comes
        near it).
        """
        data = _binary_frame(message, self.max_message_bytes, self.name)
        bound = _json_object_bound(data)
        if bound > self.limits.max_objects:
            raise _over_objects(self.limits.max_objects)
        try:
            value = json.loads(data.decode("utf-8-sig"), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # includes JSONDecodeError, bad UTF-8
            raise DecodeError(f"invalid JSON message: {exc}") from None
        if bound > self.limits.max_depth:
            _check_depth(value, self.limits.max_depth)
        if _is_close(value):
            return [(CLOSE, 0)]
        objects = _count_objects(value) if bound > 1 else 1
        return [(value, len(data) + OBJECT_COST * objects)]


def _reject_constant(name: str) -> object:
    raise DecodeError(f"{name} is not valid JSON")


class RawSerializer(_Unchunked):
    """``raw``: ``str`` and bytes-like values go out and come back untouched."""

    name: str = "raw"
    wire_name: str = "raw"

    def encode(self, value: object) -> list[bytes | str]:
        """``str`` becomes a text frame, bytes-likes a binary frame."""
        if isinstance(value, str):
            return [str.__str__(value)]
        if isinstance(value, (bytes, bytearray, memoryview)):
            return [value if type(value) is bytes else bytes(value)]
        raise EncodeError(
            f"raw serialization sends only str or bytes, not {type(value).__qualname__}"
        )

    def encode_close(self) -> list[bytes | str]:
        """Always raises: PeerJS cannot express the close request over raw."""
        raise EncodeError("raw serialization has no in-band close request; close the channel")

    def decode_sized(self, message: bytes | str) -> list[tuple[object, int]]:
        """The message as received (``str`` or ``bytes``), with its accounted size."""
        if len(message) > self.max_message_bytes:
            raise DecodeError(f"message of {len(message)} bytes exceeds {self.max_message_bytes}")
        size = len(message) + OBJECT_COST
        if isinstance(message, str):
            return [(message if type(message) is str else str(message), size)]
        return [(message if type(message) is bytes else bytes(message), size)]


class MsgPackSerializer:
    """``MsgPack``: an unframed msgpack stream, sliced into <= 32 KiB messages."""

    name: str = "MsgPack"
    wire_name: str = "MsgPack"
    reliable_required: bool = True

    def __init__(self, *, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.max_message_bytes = self.limits.max_message_bytes
        # A container cannot declare more items than a whole value may hold:
        # msgpack preallocates them before any hook can count.
        max_len = min(self.limits.max_items, self.limits.max_objects)
        self._unpacker = msgpack.Unpacker(
            raw=False,
            use_list=True,
            timestamp=3,  # ext -1 (a JS Date) -> aware datetime in UTC
            strict_map_key=False,
            list_hook=self._count_list,
            object_pairs_hook=self._count_map,
            ext_hook=_reject_ext,
            max_buffer_size=self.limits.max_message_bytes,
            max_array_len=max_len,
            max_map_len=max_len,
        )
        self._fed = 0  # bytes fed to the unpacker since the start
        self._start = 0  # stream offset of the value being decoded
        self._objects = 0  # objects inside it so far, counted by the hooks
        self._max_objects = self.limits.max_objects
        self._broken: str | None = None

    @property
    def held_bytes(self) -> int:
        """The bytes and objects of the stream's value not complete yet."""
        return self._fed - self._start + OBJECT_COST * self._objects

    # The hooks run once per container on the hot path: kept flat on purpose.
    def _count_list(self, items: list[object]) -> list[object]:
        """Count a completed array's items against the value's object budget."""
        self._objects += len(items)
        if self._objects >= self._max_objects:  # the value itself is one more
            raise _over_objects(self._max_objects)
        return items

    def _count_map(self, pairs: list[tuple[object, object]]) -> dict[str, object]:
        """Count a completed map's keys and values; build it with ``str`` keys."""
        self._objects += 2 * len(pairs)
        if self._objects >= self._max_objects:
            raise _over_objects(self._max_objects)
        return _msgpack_map(pairs)

    def encode(self, value: object) -> list[bytes | str]:
        """Pack ``value`` and cut the bytes into slices of at most 32768 bytes."""
        if _is_close(value):
            raise EncodeError("the map {'__peerData': {'type': 'close'}} is PeerJS's close request")
        plain = _plain(value, 0, self.limits.max_depth, msgpack_types=True)
        try:
            data = msgpack.packb(plain, use_bin_type=True, datetime=True)
        except (ValueError, TypeError, OverflowError) as exc:
            raise EncodeError(f"MsgPack cannot carry this value: {exc}") from None
        return _slices(data, MSGPACK_SLICE_BYTES)

    def encode_close(self) -> list[bytes | str]:
        """The close request: ``81 aa __peerData 81 a4 type a5 close``."""
        return [msgpack.packb(_CLOSE_VALUE)]

    def decode(self, message: bytes | str) -> list[object]:
        """Feed one message to the stream; return every value it completes."""
        return [value for value, _ in self.decode_sized(message)]

    def decode_sized(self, message: bytes | str) -> list[tuple[object, int]]:
        """Like :meth:`decode`, each value with its accounted size.

        A value may span messages; its bytes so far count against
        ``max_message_bytes`` and its objects against ``Limits.max_objects``
        while it is incomplete.
        """
        if self._broken is not None:
            raise DecodeError(f"MsgPack stream is broken by an earlier error: {self._broken}")
        data = _binary_frame(message, self.max_message_bytes, self.name)
        values: list[tuple[object, int]] = []
        unpacker = self._unpacker
        try:
            unpacker.feed(data)
            self._fed += len(data)
            for value in unpacker:
                end = unpacker.tell()
                objects = self._objects + 1
                size = end - self._start + OBJECT_COST * objects
                self._start = end
                self._objects = 0
                self._check_size(size - OBJECT_COST * objects)
                if objects > self.limits.max_depth:  # fewer objects cannot nest that deep
                    _check_depth(value, self.limits.max_depth)
                values.append((CLOSE, 0) if _is_close(value) else (value, size))
            self._check_size(self._fed - self._start)
        except DecodeError as exc:
            self._broken = str(exc)
            raise
        except msgpack.BufferFull:
            self._broken = f"a value exceeds max_message_bytes={self.limits.max_message_bytes}"
            raise DecodeError(f"MsgPack stream: {self._broken}") from None
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
            self._broken = f"{type(exc).__name__}: {exc}"
            raise DecodeError(f"invalid MsgPack data: {self._broken}") from None
        return values

    def _check_size(self, size: int) -> None:
        if size > self.max_message_bytes:
            raise DecodeError(
                f"MsgPack stream: a value of {size} bytes so far exceeds"
                f" max_message_bytes={self.max_message_bytes}"
            )

    def finish(self) -> None:
        """Raise DecodeError if the stream ended inside a value."""
        pending = self._fed - self._start
        if pending and self._broken is None:
            raise DecodeError(f"MsgPack stream ended inside a value ({pending} bytes pending)")


def _slices(data: bytes, size: int) -> list[bytes | str]:
    if len(data) <= size:
        return [data]
    view = memoryview(data)
    return [bytes(view[i : i + size]) for i in range(0, len(data), size)]


def _msgpack_map(pairs: list[tuple[object, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if type(key) is not str:
            if type(key) is not int:
                raise DecodeError(f"MsgPack map key of type {type(key).__qualname__}")
            key = str(key)
        result[key] = value
    return result


def _reject_ext(code: int, data: bytes) -> object:
    raise DecodeError(f"MsgPack extension type {code} is not supported")


# ---------------------------------------------------------------------- factories

#: The valid ``serialization`` option names.
SERIALIZATIONS: Final[tuple[str, ...]] = (
    "default",
    "binary",
    "binary-utf8",
    "json",
    "raw",
    "MsgPack",
)


#: Makes a serializer, called as ``factory(limits=limits)`` like the built-in
#: classes (:class:`JsonSerializer` is one); custom ones go in ``Peer(serializers=...)``.
SerializerFactory = Callable[..., Serializer]
_MEMBERS: Final = (
    "name",
    "wire_name",
    "reliable_required",
    "max_message_bytes",
    "held_bytes",
    "encode",
    "encode_close",
    "decode",
    "decode_sized",
    "finish",
)


def check_factories(
    factories: Mapping[str, SerializerFactory] | None,
) -> dict[str, SerializerFactory]:
    """Check the custom serializer names of ``Peer(serializers=...)``; return a copy."""
    checked: dict[str, SerializerFactory] = {}
    for name, factory in (factories or {}).items():
        if type(name) is not str or not name or len(name) > 64:
            raise UsageError(f"a serialization name must be a short string, not {name!r:.60}")
        if not callable(factory):
            raise UsageError(f"serializers[{name!r}] must make a serializer, not {factory!r:.60}")
        checked[name] = factory
    return checked


def _checked(serializer: object, name: str) -> Serializer:
    """``serializer`` if it has every member of :class:`Serializer`, else a UsageError."""
    missing = [member for member in _MEMBERS if not hasattr(serializer, member)]
    if missing:
        raise UsageError(
            f"the custom serializer {name!r} lacks {', '.join(missing)} "
            "(see peerpy.serialization.Serializer)"
        )
    return cast(Serializer, serializer)


def create_serializer(
    name: str,
    *,
    limits: Limits | None = None,
    custom: Mapping[str, SerializerFactory] | None = None,
) -> Serializer:
    """Return a new serializer for the option ``name`` (``"default"`` is ``"binary"``).

    A name in ``custom`` (``Peer(serializers=...)``) calls that factory with
    ``limits=`` and checks the result has the :class:`Serializer` members.
    """
    if custom and name in custom:
        return _checked(custom[name](limits=limits or Limits()), name)
    if name in ("default", "binary", "binary-utf8"):
        return BinarySerializer("binary" if name == "default" else name, limits=limits)
    if name == "json":
        return JsonSerializer(limits=limits)
    if name == "raw":
        return RawSerializer(limits=limits)
    if name == "MsgPack":
        return MsgPackSerializer(limits=limits)
    raise UsageError(f"unknown serialization {name!r}; valid: {', '.join(SERIALIZATIONS)}")


def serializer_for_wire_name(
    wire_name: str,
    *,
    limits: Limits | None = None,
    custom: Mapping[str, SerializerFactory] | None = None,
) -> Serializer:
    """Return a serializer for the ``serialization`` field of a received OFFER."""
    known = type(wire_name) is str and (wire_name in SERIALIZATIONS or wire_name in (custom or {}))
    if not known:
        raise DecodeError(f"OFFER asks for unknown serialization {wire_name!r:.60}")
    return create_serializer(wire_name, limits=limits, custom=custom)
