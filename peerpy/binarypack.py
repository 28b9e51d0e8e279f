"""BinaryPack, the msgpack dialect of PeerJS's ``binary`` serialization.

This is the wire format of ``peerjs-js-binarypack`` 2.1.0 (used by PeerJS 1.5.5),
written from the protocol description, not from the JS code. It looks like
msgpack but is not compatible with it: ``0xa0-0xaf`` is *binary*, ``0xb0-0xbf``
is a *string*, ``0xd8``/``0xd9`` are str16/str32 and ``0xda``/``0xdb`` are
raw16/raw32. Every multi-byte number is big-endian.

:func:`pack` writes exactly the bytes the JS packer writes for the same value,
with these deliberate differences, all made so that a browser decodes the value
correctly (its decoder has known bugs):

* Whole-number floats within the JS safe-integer range (``0.0``, ``-0.0``,
  ``1.0``, ``1e15``) are written as integers, as the JS packer does. This also
  avoids the JS decoder's bug that turns a float64 ``0.0`` into ``1.1e-308``.
* Integers outside ``±(2**53 - 1)`` raise :class:`~peerpy.exceptions.EncodeError`:
  a JS ``number`` cannot hold them.
* Integers below ``-2**31`` are written as float64 (exact for safe integers),
  because the JS decoder mangles negative int64 values.
* Whole-number floats beyond the safe range (``1e300``) and ``±inf`` are written
  as float64 (the JS packer throws; the JS decoder reads them correctly).
* ``nan`` is written as ``cb 00…00``, the bytes the JS packer writes for ``NaN``.
  The JS decoder turns those into a tiny garbage number.

:func:`unpack` is strict: truncated input, trailing bytes, type bytes BinaryPack
does not define and nesting deeper than ``max_depth`` raise
:class:`~peerpy.exceptions.DecodeError`. Its float rule mirrors the packer: a
float64 holding a whole number in the safe range comes back as ``int`` and
``cb 00…00`` comes back as ``nan``. Binary comes back as ``bytes``, arrays as
``list`` and maps as ``dict`` with ``str`` keys (integer keys are turned into
strings, as JS does).
"""

from __future__ import annotations

import math
import struct
from typing import Final

from peerpy.exceptions import DecodeError, EncodeError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_OBJECTS",
    "MAX_SAFE_INTEGER",
    "binary_header",
    "pack",
    "string_key",
    "unpack",
    "unpack_counted",
]

#: ``Number.MAX_SAFE_INTEGER``: the largest integer every JS peer can hold exactly.
MAX_SAFE_INTEGER: Final = 2**53 - 1
#: How many containers (arrays, maps) may nest inside each other by default.
DEFAULT_MAX_DEPTH: Final = 256
#: How many objects a decoded value may hold by default (see :func:`unpack_counted`).
DEFAULT_MAX_OBJECTS: Final = 1024 * 1024

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")

_FIXINT: Final = {i: bytes([i & 0xFF]) for i in range(-32, 128)}
_NAN_BYTES: Final = b"\xcb" + bytes(8)
_MAX_LEN: Final = 0xFFFFFFFF


# --------------------------------------------------------------------------- pack


def pack(obj: object, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode ``obj`` as BinaryPack bytes.

    Supported: ``None``, ``bool``, ``int`` (JS safe range), ``float``, ``str``,
    ``bytes``/``bytearray``/``memoryview`` (binary), ``list``/``tuple`` (array)
    and ``dict`` with ``str`` or ``int`` keys (map; int keys become strings).
    Anything else, or containers nested deeper than ``max_depth``, raises
    :class:`~peerpy.exceptions.EncodeError`.
    """
    if type(obj) is bytes:  # fast path for the bulk-transfer case
        return binary_header(len(obj)) + obj
    out: list[bytes] = []
    _pack(obj, out, 0, max_depth)
    return b"".join(out)


def binary_header(length: int) -> bytes:
    """Return the BinaryPack header of a binary value of ``length`` bytes."""
    return _length_header(length, 0xA0, b"\xda", b"\xdb", "binary value", "bytes")


def _length_header(n: int, fix: int, code16: bytes, code32: bytes, kind: str, unit: str) -> bytes:
    """The header of a binary value, string, array or map of length ``n``.

    One byte (``fix | n``) up to 15, else ``code16`` or ``code32`` and the
    length; longer than 2**32 - 1: EncodeError naming ``kind`` and ``unit``.
    """
    if n <= 0x0F:
        return bytes((fix | n,))
    if n <= 0xFFFF:
        return code16 + _U16.pack(n)
    if n <= _MAX_LEN:
        return code32 + _U32.pack(n)
    raise EncodeError(f"{kind} of {n} {unit} is too long for BinaryPack")


def _pack(obj: object, out: list[bytes], depth: int, max_depth: int) -> None:
    """Append the encoding of ``obj`` (at nesting ``depth``) to ``out``."""
    t = type(obj)
    if t is str:
        _pack_str(obj, out)  # type: ignore[arg-type]
    elif t is int:
        _pack_int(obj, out)  # type: ignore[arg-type]
    elif obj is None:
        out.append(b"\xc0")
    elif t is bool:
        out.append(b"\xc3" if obj else b"\xc2")
    elif t is float:
        _pack_float(obj, out)  # type: ignore[arg-type]
    elif t is bytes:
        out.append(binary_header(len(obj)))  # type: ignore[arg-type]
        out.append(obj)  # type: ignore[arg-type]
    elif t is list or t is tuple:
        _pack_array(obj, out, depth, max_depth)  # type: ignore[arg-type]
    elif t is dict:
        _pack_map(obj, out, depth, max_depth)  # type: ignore[arg-type]
    else:
        _pack_other(obj, out, depth, max_depth)


def _pack_other(obj: object, out: list[bytes], depth: int, max_depth: int) -> None:
    """Encode bytes-likes and subclasses of the supported types (IntEnum, ...)."""
    if isinstance(obj, (bytearray, memoryview)):
        data = bytes(obj)
        out.append(binary_header(len(data)))
        out.append(data)
    elif isinstance(obj, bool):
        out.append(b"\xc3" if obj else b"\xc2")
    elif isinstance(obj, int):
        _pack_int(int(obj), out)
    elif isinstance(obj, float):
        _pack_float(float(obj), out)
    elif isinstance(obj, str):
        _pack_str(str.__str__(obj), out)
    elif isinstance(obj, bytes):
        _pack(bytes(obj), out, depth, max_depth)
    elif isinstance(obj, (list, tuple)):
        _pack_array(obj, out, depth, max_depth)
    elif isinstance(obj, dict):
        _pack_map(obj, out, depth, max_depth)
    else:
        raise EncodeError(f"BinaryPack cannot encode a value of type {type(obj).__qualname__}")


def _pack_int(x: int, out: list[bytes]) -> None:
    """Integers in the JS packer's order of forms (see the module docstring)."""
    if -32 <= x <= 127:
        out.append(_FIXINT[x])
    elif x >= 0:
        if x <= 0xFF:
            out.append(b"\xcc" + _U8.pack(x))
        elif x <= 0xFFFF:
            out.append(b"\xcd" + _U16.pack(x))
        elif x <= 0xFFFFFFFF:
            out.append(b"\xce" + _U32.pack(x))
        elif x <= MAX_SAFE_INTEGER:
            out.append(b"\xd3" + _I64.pack(x))
        else:
            raise EncodeError(f"integer {x} is larger than 2**53 - 1, which JS cannot hold")
    elif x >= -0x80:
        out.append(b"\xd0" + _I8.pack(x))
    elif x >= -0x8000:
        out.append(b"\xd1" + _I16.pack(x))
    elif x >= -0x80000000:
        out.append(b"\xd2" + _I32.pack(x))
    elif x >= -MAX_SAFE_INTEGER:
        # The JS decoder gets negative int64 wrong; a float64 carries it exactly.
        out.append(b"\xcb" + _F64.pack(float(x)))
    else:
        raise EncodeError(f"integer {x} is smaller than -(2**53 - 1), which JS cannot hold")


def _pack_float(x: float, out: list[bytes]) -> None:
    """Whole numbers as integers (like JS), ``nan`` like JS, the rest as float64."""
    if x.is_integer() and -MAX_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
        _pack_int(int(x), out)
    elif x != x:
        out.append(_NAN_BYTES)
    else:
        out.append(b"\xcb" + _F64.pack(x))


def _pack_str(s: str, out: list[bytes]) -> None:
    try:
        data = s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string is not valid Unicode (lone surrogate): {exc}") from None
    out.append(_length_header(len(data), 0xB0, b"\xd8", b"\xd9", "string", "bytes"))
    out.append(data)


def _pack_array(
    seq: list[object] | tuple[object, ...], out: list[bytes], depth: int, max_depth: int
) -> None:
    if depth >= max_depth:
        raise EncodeError(f"value nests deeper than {max_depth} arrays/maps (or is cyclic)")
    out.append(_length_header(len(seq), 0x90, b"\xdc", b"\xdd", "container", "items"))
    for item in seq:
        _pack(item, out, depth + 1, max_depth)


def _pack_map(mapping: dict[object, object], out: list[bytes], depth: int, max_depth: int) -> None:
    if depth >= max_depth:
        raise EncodeError(f"value nests deeper than {max_depth} arrays/maps (or is cyclic)")
    out.append(_length_header(len(mapping), 0x80, b"\xde", b"\xdf", "container", "items"))
    for key, value in mapping.items():
        if type(key) is not str:
            key = string_key(key, mapping)
        _pack_str(key, out)
        _pack(value, out, depth + 1, max_depth)


def string_key(key: object, mapping: dict[object, object]) -> str:
    """The map key ``key`` of ``mapping`` as a ``str``.

    An ``int`` becomes its decimal string, as JS object keys are; another type,
    or an ``int`` whose string is also a key of ``mapping``, raises EncodeError.
    """
    if isinstance(key, str):
        return key if type(key) is str else str.__str__(key)
    if isinstance(key, int) and not isinstance(key, bool):
        text = str(int(key))
        if text in mapping:
            raise EncodeError(f"map has both the keys {key!r} and {text!r}")
        return text
    raise EncodeError(f"map keys must be str or int, not {type(key).__qualname__}")


# ------------------------------------------------------------------------- unpack


def unpack(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int | None = None,
    max_objects: int | None = DEFAULT_MAX_OBJECTS,
) -> object:
    """Decode one BinaryPack value that fills ``data`` exactly.

    Raises :class:`~peerpy.exceptions.DecodeError` on truncated input, trailing
    bytes, undefined type bytes, invalid UTF-8, unsupported map keys, nesting
    deeper than ``max_depth``, an array/map of more than ``max_items`` items, or
    a value of more than ``max_objects`` objects in all (see :func:`unpack_counted`).
    """
    return unpack_counted(data, max_depth=max_depth, max_items=max_items, max_objects=max_objects)[
        0
    ]


def unpack_counted(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int | None = None,
    max_objects: int | None = DEFAULT_MAX_OBJECTS,
) -> tuple[object, int]:
    """Like :func:`unpack`; also return how many objects the value holds.

    Objects are the value itself and every array item, map key and map value at
    any depth, counted across the whole value. Each container's items are
    counted from its header *before* they are decoded, so a value declaring
    more than ``max_objects`` raises at once instead of after allocating them.
    ``None`` leaves only the bound every value has: one object per byte.
    """
    buf = data if type(data) is bytes else bytes(data)
    limit = len(buf) if max_items is None else max_items
    budget = [len(buf) if max_objects is None else max_objects]
    budget[0] -= 1
    if budget[0] < 0:
        raise DecodeError(f"BinaryPack value exceeds max_objects={max_objects}")
    try:
        value, pos = _unpack(buf, 0, 0, max_depth, limit, budget)
    except RecursionError:
        raise DecodeError("BinaryPack value nests too deeply for the Python stack") from None
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes after the BinaryPack value")
    total = len(buf) if max_objects is None else max_objects
    return value, total - budget[0]


def _need(buf: bytes, pos: int, n: int) -> None:
    if pos + n > len(buf):
        raise DecodeError(f"BinaryPack data truncated: needs {n} bytes at offset {pos}")


def _unpack(
    buf: bytes, pos: int, depth: int, max_depth: int, max_items: int, budget: list[int]
) -> tuple[object, int]:
    """Decode the value at ``pos``; return it and the offset just after it.

    ``budget[0]`` is how many more objects the whole value may hold; containers
    take their items from it before decoding them.
    """
    if pos >= len(buf):
        raise DecodeError(f"BinaryPack data truncated at offset {pos}")
    b = buf[pos]
    pos += 1
    if b <= 0x7F:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if b <= 0x8F:
        return _unpack_map(buf, pos, b & 0x0F, depth, max_depth, max_items, budget)
    if b <= 0x9F:
        return _unpack_array(buf, pos, b & 0x0F, depth, max_depth, max_items, budget)
    if b <= 0xAF:
        return _take_bytes(buf, pos, b & 0x0F)
    if b <= 0xBF:
        return _take_str(buf, pos, b & 0x0F)
    if b <= 0xC3:
        return _SIMPLE[b - 0xC0], pos
    if b == 0xCB:
        _need(buf, pos, 8)
        value = _F64.unpack_from(buf, pos)[0]
        if value == 0 and buf[pos] == 0:  # +0.0: all bits zero, how JS packs NaN
            return math.nan, pos + 8
        return _float_value(value), pos + 8
    fixed = _FIXED.get(b)
    if fixed is not None:
        fmt = fixed
        _need(buf, pos, fmt.size)
        value = fmt.unpack_from(buf, pos)[0]
        if fmt is _F32:
            value = _float_value(value)
        return value, pos + fmt.size
    sized = _SIZED.get(b)
    if sized is None:
        raise DecodeError(f"undefined BinaryPack type byte 0x{b:02x} at offset {pos - 1}")
    fmt, kind = sized
    _need(buf, pos, fmt.size)
    n = fmt.unpack_from(buf, pos)[0]
    pos += fmt.size
    if kind == "str":
        return _take_str(buf, pos, n)
    if kind == "raw":
        return _take_bytes(buf, pos, n)
    if kind == "array":
        return _unpack_array(buf, pos, n, depth, max_depth, max_items, budget)
    return _unpack_map(buf, pos, n, depth, max_depth, max_items, budget)


_SIMPLE: Final = (None, None, False, True)  # c0 nil, c1 JS undefined, c2, c3
_FIXED: Final = {
    0xCA: _F32,
    0xCC: _U8,
    0xCD: _U16,
    0xCE: _U32,
    0xCF: _U64,
    0xD0: _I8,
    0xD1: _I16,
    0xD2: _I32,
    0xD3: _I64,
}
_SIZED: Final = {
    0xD8: (_U16, "str"),
    0xD9: (_U32, "str"),
    0xDA: (_U16, "raw"),
    0xDB: (_U32, "raw"),
    0xDC: (_U16, "array"),
    0xDD: (_U32, "array"),
    0xDE: (_U16, "map"),
    0xDF: (_U32, "map"),
}


def _float_value(value: float) -> object:
    """Apply the float rule: a whole number in the safe range comes back as int."""
    if value.is_integer() and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return int(value)
    return value


def _take_bytes(buf: bytes, pos: int, n: int) -> tuple[bytes, int]:
    _need(buf, pos, n)
    return buf[pos : pos + n], pos + n


def _take_str(buf: bytes, pos: int, n: int) -> tuple[str, int]:
    _need(buf, pos, n)
    try:
        return buf[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise DecodeError(f"BinaryPack string at offset {pos} is not UTF-8: {exc}") from None


def _over_budget(kind: str, n: int) -> DecodeError:
    return DecodeError(
        f"BinaryPack {kind} of {n} items goes past the value's object budget"
        " (Limits.max_objects counts items across the whole value)"
    )


def _unpack_array(
    buf: bytes, pos: int, n: int, depth: int, max_depth: int, max_items: int, budget: list[int]
) -> tuple[object, int]:
    if depth >= max_depth:
        raise DecodeError(f"BinaryPack value nests deeper than {max_depth} arrays/maps")
    if n > len(buf) - pos:  # every item takes at least one byte
        raise DecodeError(f"BinaryPack array of {n} items does not fit in the data")
    if n > max_items:
        raise DecodeError(f"BinaryPack array of {n} items exceeds max_items={max_items}")
    budget[0] -= n
    if budget[0] < 0:
        raise _over_budget("array", n)
    items: list[object] = []
    append = items.append
    for _ in range(n):
        item, pos = _unpack(buf, pos, depth + 1, max_depth, max_items, budget)
        append(item)
    return items, pos


def _unpack_map(
    buf: bytes, pos: int, n: int, depth: int, max_depth: int, max_items: int, budget: list[int]
) -> tuple[object, int]:
    if depth >= max_depth:
        raise DecodeError(f"BinaryPack value nests deeper than {max_depth} arrays/maps")
    if 2 * n > len(buf) - pos:  # every pair takes at least two bytes
        raise DecodeError(f"BinaryPack map of {n} pairs does not fit in the data")
    if n > max_items:
        raise DecodeError(f"BinaryPack map of {n} pairs exceeds max_items={max_items}")
    budget[0] -= 2 * n
    if budget[0] < 0:
        raise _over_budget("map", n)
    result: dict[str, object] = {}
    for _ in range(n):
        key, pos = _unpack(buf, pos, depth + 1, max_depth, max_items, budget)
        if type(key) is not str:
            if type(key) is not int:
                raise DecodeError(f"BinaryPack map key of type {type(key).__qualname__}")
            key = str(key)
        value, pos = _unpack(buf, pos, depth + 1, max_depth, max_items, budget)
        result[key] = value
    return result, pos
