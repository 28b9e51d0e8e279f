"""The values sent in the interop suite, and what each side must see.

Each serialization has one batch per direction, so a whole value matrix costs
one message round trip:

* ``PY_SENDS[s]`` is what Python sends; ``BROWSER_SEES[s]`` is the page's
  description of what PeerJS handed to its ``data`` handler.
* ``BROWSER_SENDS[s]`` is the description the page builds and sends;
  ``PY_SEES[s]`` is what :meth:`DataConnection.recv` must return.

Each entry is a list of messages: one map for every serialization but
``raw``, which carries only ``str`` and binary, one frame each.

Descriptions are the JSON form of ``page/harness.js``: plain JSON for plain
values, ``{"$num": "-0"}`` for negative zero, ``{"$type": "ArrayBuffer",
"$hex": ...}`` for binary, ``{"$undefined": true}`` for ``undefined``.
Every difference between a sent value and a seen one is a documented PeerJS
behaviour (peerjs-wire.md §4), named in a comment.
"""

from __future__ import annotations

import math
from typing import Any

NEG_ZERO = {"$num": "-0"}
UNDEFINED = {"$undefined": True}

TEXT = "héllo wörld — ✓ 😀 中文 ǅ"
LONG_TEXT = "ü€😀x" * 8  # over 15 UTF-8 bytes: the str16 / str8 forms
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
UINT32_MAX = 2**32 - 1
INTS = [0, 1, 127, 128, 255, 256, -1, -32, -33, -128, -129, 65535, 65536, -32769, 2**40]
NESTED = {"list": [1, {"deep": [None, True, False, "x", []]}, []], "empty": {}, "ü": "key"}
BYTES = bytes([0, 1, 0x7F, 0x80, 0xFE, 0xFF]) + bytes(range(20))


def binary(data: bytes, js_type: str) -> dict[str, str]:
    """The description of binary ``data`` held as a JS ``js_type``."""
    return {"$type": js_type, "$hex": data.hex()}


def _common() -> dict[str, Any]:
    return {
        "text": TEXT,
        "long_text": LONG_TEXT,
        "int32_max": INT32_MAX,
        "int32_min": INT32_MIN,
        "uint32_max": UINT32_MAX,
        "ints": INTS,
        "float": 1.5,
        "neg_float": -0.1,
        "pi": math.pi,
        "nested": NESTED,
        "none": None,
        "true": True,
    }


def _with(base: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**base, **extra}


PY_SENDS: dict[str, Any] = {}
BROWSER_SEES: dict[str, Any] = {}
BROWSER_SENDS: dict[str, Any] = {}
PY_SEES: dict[str, Any] = {}

# --- binary / binary-utf8 (BinaryPack) -------------------------------------
for _name in ("binary", "binary-utf8"):
    PY_SENDS[_name] = _with(_common(), zero=0.0, neg_zero=-0.0, bytes=BYTES, empty=b"")
    # Whole floats travel as integers (so -0.0 arrives as 0); binary as ArrayBuffer.
    BROWSER_SEES[_name] = _with(
        _common(),
        zero=0,
        neg_zero=0,
        bytes=binary(BYTES, "ArrayBuffer"),
        empty=binary(b"", "ArrayBuffer"),
    )
    BROWSER_SENDS[_name] = _with(
        _common(),
        zero=0,
        neg_zero=NEG_ZERO,
        u8=binary(BYTES, "Uint8Array"),
        ab=binary(BYTES, "ArrayBuffer"),
        undef=UNDEFINED,
    )
    # The JS packer writes -0 as the integer 0 and undefined as nil.
    PY_SEES[_name] = _with(_common(), zero=0, neg_zero=0, u8=BYTES, ab=BYTES, undef=None)

# --- json --------------------------------------------------------------------
PY_SENDS["json"] = _with(_common(), zero=0.0, neg_zero=-0.0)
# JSON.parse("0.0") is 0 and JSON.parse("-0.0") is -0.
BROWSER_SEES["json"] = _with(_common(), zero=0, neg_zero=NEG_ZERO)
BROWSER_SENDS["json"] = _with(
    _common(),
    zero=0,
    neg_zero=NEG_ZERO,
    u8=binary(b"\x01\x02", "Uint8Array"),
    ab=binary(b"\x01\x02", "ArrayBuffer"),
    undef=UNDEFINED,
)
# JSON.stringify: -0 becomes "0", a Uint8Array an index-keyed object, an
# ArrayBuffer "{}", and a key whose value is undefined is left out.
PY_SEES["json"] = _with(_common(), zero=0, neg_zero=0, u8={"0": 1, "1": 2}, ab={})

# --- raw: one frame per value, str as text and bytes as binary ----------------
PY_SENDS["raw"] = [TEXT, BYTES, "", LONG_TEXT]
BROWSER_SEES["raw"] = [TEXT, binary(BYTES, "ArrayBuffer"), "", LONG_TEXT]
BROWSER_SENDS["raw"] = [TEXT, binary(BYTES, "Uint8Array"), binary(BYTES, "ArrayBuffer")]
PY_SEES["raw"] = [TEXT, BYTES, BYTES]

# --- MsgPack (standard msgpack stream) ----------------------------------------
PY_SENDS["MsgPack"] = _with(_common(), zero=0.0, neg_zero=-0.0, bytes=BYTES, empty=b"")
# Python floats stay float64, so -0.0 survives; bin arrives as Uint8Array.
BROWSER_SEES["MsgPack"] = _with(
    _common(),
    zero=0,
    neg_zero=NEG_ZERO,
    bytes=binary(BYTES, "Uint8Array"),
    empty=binary(b"", "Uint8Array"),
)
BROWSER_SENDS["MsgPack"] = _with(
    _common(),
    zero=0,
    neg_zero=NEG_ZERO,
    u8=binary(BYTES, "Uint8Array"),
    ab=binary(BYTES, "ArrayBuffer"),
    undef=UNDEFINED,
)
# @msgpack/msgpack writes -0 as the integer 0, undefined as nil, and a bare
# ArrayBuffer (not an ArrayBufferView) as an empty map.
PY_SEES["MsgPack"] = _with(_common(), zero=0, neg_zero=0, u8=BYTES, ab={}, undef=None)

SERIALIZATIONS = ("binary", "binary-utf8", "json", "raw", "MsgPack")

for _table in (PY_SENDS, BROWSER_SEES, BROWSER_SENDS, PY_SEES):
    for _name in SERIALIZATIONS:
        if _name != "raw":
            _table[_name] = [_table[_name]]

#: The ``reliable`` option each serialization's case uses: both values are
#: covered, and raw (several frames) runs ordered.  MsgPack forces True.
RELIABLE = {"binary": False, "binary-utf8": True, "json": False, "raw": True, "MsgPack": True}


def assert_same(actual: Any, expected: Any, path: str = "value") -> None:
    """Assert equal values of equal types (``0``, ``0.0``, ``False`` and ``-0.0`` differ)."""
    assert type(actual) is type(expected), (
        f"{path}: {type(actual).__name__} {actual!r:.80} != {type(expected).__name__} "
        f"{expected!r:.80}"
    )
    if isinstance(expected, dict):
        assert list(actual) == list(expected) or set(actual) == set(expected), (
            f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        )
        for key, value in expected.items():
            assert_same(actual[key], value, f"{path}[{key!r}]")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
        assert math.copysign(1, actual) == math.copysign(1, expected), f"{path}: sign of zero"
    else:
        assert actual == expected, f"{path}: {actual!r:.80} != {expected!r:.80}"
