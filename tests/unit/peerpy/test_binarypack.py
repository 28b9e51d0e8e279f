"""BinaryPack: the golden vectors of the wire spec (§4.5, §4.6) and the JS quirks."""

from __future__ import annotations

import contextlib
import enum
import json
import math
import shutil
import struct
import subprocess
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerpy.binarypack import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_OBJECTS,
    MAX_SAFE_INTEGER,
    pack,
    unpack,
    unpack_counted,
)
from peerpy.chunking import Chunker
from peerpy.exceptions import DecodeError, EncodeError

from ...helpers.equality import same

# Every vector of spec §4.5, produced by the real js-binarypack 2.1.0.
GOLDEN: list[tuple[str, object, str]] = [
    ("0", 0, "00"),
    ("127", 127, "7f"),
    ("128", 128, "cc80"),
    ("255", 255, "ccff"),
    ("256", 256, "cd0100"),
    ("-1", -1, "ff"),
    ("-32", -32, "e0"),
    ("-33", -33, "d0df"),
    ("-128", -128, "d080"),
    ("-129", -129, "d1ff7f"),
    ("65535", 65535, "cdffff"),
    ("65536", 65536, "ce00010000"),
    ("-32768", -32768, "d18000"),
    ("-32769", -32769, "d2ffff7fff"),
    ("4294967295", 4294967295, "ceffffffff"),
    ("4294967296", 4294967296, "d30000000100000000"),
    ("-2147483648", -2147483648, "d280000000"),
    ("1.5", 1.5, "cb3ff8000000000000"),
    ("-0.1", -0.1, "cbbfb999999999999a"),
    ("Math.PI", math.pi, "cb400921fb54442d18"),
    ("true", True, "c3"),
    ("false", False, "c2"),
    ("null", None, "c0"),
    ('""', "", "b0"),
    ('"hi"', "hi", "b26869"),
    ('"héllo"', "héllo", "b668c3a96c6c6f"),
    ('"😀"', "😀", "b4f09f9880"),
    ('"a"*16', "a" * 16, "d80010" + "61" * 16),
    ("[]", [], "90"),
    ('[1,"a"]', [1, "a"], "9201b161"),
    ("{}", {}, "80"),
    ("{a:1}", {"a": 1}, "81b16101"),
    ("Uint8Array[1,2,3]", b"\x01\x02\x03", "a3010203"),
    ("ArrayBuffer(0)", b"", "a0"),
    (
        "{__peerData:{type:close}}",
        {"__peerData": {"type": "close"}},
        "81ba5f5f706565724461746181b474797065b5636c6f7365",
    ),
]


@pytest.mark.parametrize(("label", "value", "hexdata"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_vector_packs_byte_exact(label: str, value: object, hexdata: str) -> None:
    """pack() writes exactly the bytes js-binarypack 2.1.0 writes."""
    assert pack(value).hex() == hexdata


@pytest.mark.parametrize(("label", "value", "hexdata"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_vector_unpacks(label: str, value: object, hexdata: str) -> None:
    """unpack() reads every golden vector back to the value, with the same type."""
    result = unpack(bytes.fromhex(hexdata))
    assert result == value
    assert type(result) is type(value)


def test_undefined_packs_like_null() -> None:
    """JS undefined is c0 like null; c1 (JS undefined) decodes as None."""
    assert pack(None) == b"\xc0"
    assert unpack(b"\xc1") is None


def test_typed_array_view_packs_its_raw_bytes() -> None:
    """Int32Array[1] -> a401000000: a memoryview packs its raw (little-endian here) bytes."""
    view = memoryview(b"\x01\x00\x00\x00").cast("i")
    assert pack(view).hex() == "a401000000"
    assert pack(bytearray(b"\x01\x02\x03")).hex() == "a3010203"


def test_spec_chunk_example_is_byte_exact() -> None:
    """§4.6: a 20000-byte Uint8Array gives two chunks with the exact layout."""
    payload = bytes(range(256)) * 78 + bytes(32)  # 20000 bytes
    packed = pack(payload)
    assert len(packed) == 20003
    assert packed[:3].hex() == "da4e20"
    chunks = Chunker().chunk(packed)
    assert len(chunks) == 2
    first = bytes.fromhex("84ba5f5f706565724461746101b16e00b464617461da3fac")
    tail = bytes.fromhex("b5746f74616c02")
    assert len(chunks[0]) == 16331
    assert chunks[0] == first + packed[:16300] + tail
    second = bytes.fromhex("84ba5f5f706565724461746101b16e01b464617461da0e77")
    assert chunks[1] == second + packed[16300:] + tail
    assert len(packed[16300:]) == 3703


# ------------------------------------------------------------------------ quirks


@pytest.mark.parametrize(
    ("value", "hexdata"),
    [(0.0, "00"), (-0.0, "00"), (1.0, "01"), (-1.0, "ff"), (300.0, "cd012c"), (1e15, None)],
)
def test_integral_floats_are_sent_as_integers(value: float, hexdata: str | None) -> None:
    """Whole floats are packed as ints, as JS does (the JS decoder breaks on float 0.0)."""
    assert pack(value) == pack(int(value))
    if hexdata is not None:
        assert pack(value).hex() == hexdata
    assert type(unpack(pack(value))) is int


def test_safe_integer_bounds() -> None:
    """±(2**53 - 1) pack; one beyond raises a clear EncodeError."""
    assert unpack(pack(MAX_SAFE_INTEGER)) == MAX_SAFE_INTEGER
    assert pack(MAX_SAFE_INTEGER).hex() == "d3001fffffffffffff"
    assert unpack(pack(-MAX_SAFE_INTEGER)) == -MAX_SAFE_INTEGER
    for bad in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2**64, -(2**70)):
        with pytest.raises(EncodeError, match=r"2\*\*53"):
            pack(bad)
    with pytest.raises(EncodeError):
        pack([1, {"a": 2**60}])


def test_negative_int64_goes_as_float64_and_comes_back_int() -> None:
    """Below -2**31 the JS int64 decoder is lossy, so the value travels as an exact float64."""
    packed = pack(-2147483649)
    assert packed == b"\xcb" + struct.pack(">d", -2147483649.0)
    assert unpack(packed) == -2147483649
    assert type(unpack(packed)) is int


def test_nan_is_packed_like_js_and_read_back() -> None:
    """nan packs as cb 00..00 (the JS packer's bytes for NaN), which unpacks as nan."""
    assert pack(math.nan).hex() == "cb0000000000000000"
    assert math.isnan(unpack(pack(math.nan)))  # type: ignore[arg-type]
    assert math.isnan(unpack(bytes.fromhex("cb7ff8000000000000")))  # type: ignore[arg-type]


def test_infinities_and_huge_floats_are_float64() -> None:
    """±inf and whole floats beyond 2**53 (which JS refuses to pack) go as float64."""
    assert pack(math.inf).hex() == "cb7ff0000000000000"
    assert unpack(pack(-math.inf)) == -math.inf
    assert unpack(pack(1e300)) == 1e300
    assert type(unpack(pack(1e300))) is float


def test_float_decoding_rules() -> None:
    """float32 is read; whole floats in range come back as int; -0.0 comes back as 0."""
    assert unpack(bytes.fromhex("ca3fc00000")) == 1.5
    assert unpack(bytes.fromhex("ca3f800000")) == 1
    assert type(unpack(bytes.fromhex("ca3f800000"))) is int
    assert unpack(bytes.fromhex("cb8000000000000000")) == 0
    assert type(unpack(bytes.fromhex("cb8000000000000000"))) is int


def test_wide_integer_forms_decode_exactly() -> None:
    """uint64 and negative int64 (never sent by us) decode to exact Python ints."""
    assert unpack(bytes.fromhex("cfffffffffffffffff")) == 2**64 - 1
    assert unpack(bytes.fromhex("d3ffffffff7fffffff")) == -2147483649
    assert unpack(bytes.fromhex("d3" + "00000001" + "00000000")) == 2**32


@pytest.mark.parametrize(
    ("value", "prefix"),
    [
        ("a" * 15, "bf"),
        ("a" * 65535, "d8ffff"),
        ("a" * 65536, "d900010000"),
        (b"a" * 15, "af"),
        (b"a" * 16, "da0010"),
        (b"a" * 65536, "db00010000"),
        ([0] * 15, "9f"),
        ([0] * 16, "dc0010"),
        ([0] * 65536, "dd00010000"),
        ({str(i): 0 for i in range(16)}, "de0010"),
    ],
)
def test_length_boundaries_pick_the_js_forms(value: object, prefix: str) -> None:
    """Size thresholds switch to the 16- and 32-bit headers where the JS packer does."""
    packed = pack(value)
    assert packed.hex().startswith(prefix)
    assert unpack(packed) == value


def test_map_keys() -> None:
    """Int keys become strings like JS; clashes and other key types are refused."""
    assert pack({1: "a"}) == pack({"1": "a"})
    assert unpack(pack({-5: 1, "b": 2})) == {"-5": 1, "b": 2}
    with pytest.raises(EncodeError, match="both the keys"):
        pack({1: "a", "1": "b"})
    for key in (1.5, True, None, b"k", (1,)):
        with pytest.raises(EncodeError, match="map keys"):
            pack({key: 1})
    assert unpack(bytes.fromhex("8101c0")) == {"1": None}
    with pytest.raises(DecodeError, match="map key"):
        unpack(bytes.fromhex("81a16100"))  # binary key


class Color(enum.IntEnum):
    """An int subclass."""

    RED = 1


class Name(str, enum.Enum):
    """A str subclass."""

    BOB = "bob"


def test_subclasses_pack_as_their_base_type() -> None:
    """IntEnum / str-Enum members and tuples pack like int, str and list."""
    assert unpack(pack([Color.RED, (1, 2)])) == [1, [1, 2]]
    assert type(unpack(pack(Color.RED))) is int
    assert unpack(pack({"n": Name.BOB})) == {"n": "bob"}


@pytest.mark.parametrize("value", [{1, 2}, object(), 1j, frozenset(), print, type])
def test_unsupported_types_raise_encode_error(value: object) -> None:
    """Anything outside the value mapping is an EncodeError naming the type."""
    with pytest.raises(EncodeError, match="cannot encode"):
        pack(value)


def test_lone_surrogate_is_an_encode_error() -> None:
    """A str that is not valid Unicode cannot be UTF-8 encoded."""
    with pytest.raises(EncodeError, match="surrogate"):
        pack("\ud800")


def test_encode_depth_limit_and_cycles() -> None:
    """Nesting beyond max_depth, and cyclic values, raise EncodeError."""
    value: Any = []
    for _ in range(DEFAULT_MAX_DEPTH):
        value = [value]
    with pytest.raises(EncodeError, match="deeper"):
        pack(value)
    assert unpack(pack(value[0])) == value[0]
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(EncodeError, match="cyclic"):
        pack(cyclic)


# ---------------------------------------------------------------------- strictness


@pytest.mark.parametrize(
    "hexdata",
    [
        "",
        "cc",
        "cd01",
        "cb000000",
        "b268",
        "d800",
        "d80002aa",
        "da0003aabb",
        "92 01",
        "81b161",
        "dc0001",
    ],
)
def test_truncated_input_is_a_decode_error(hexdata: str) -> None:
    """Input that ends inside a value raises DecodeError."""
    with pytest.raises(DecodeError):
        unpack(bytes.fromhex(hexdata))


def test_trailing_bytes_are_a_decode_error() -> None:
    """A value must fill the data exactly."""
    with pytest.raises(DecodeError, match="trailing"):
        unpack(b"\x01\x02")


@pytest.mark.parametrize("byte", [0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7])
def test_undefined_type_bytes_are_decode_errors(byte: int) -> None:
    """Type bytes BinaryPack does not define (JS desyncs on them) raise DecodeError."""
    with pytest.raises(DecodeError, match="undefined"):
        unpack(bytes([byte, 0, 0, 0, 0, 0, 0, 0, 0]))


def test_invalid_utf8_string_is_a_decode_error() -> None:
    """A string that is not UTF-8 raises DecodeError."""
    with pytest.raises(DecodeError, match="UTF-8"):
        unpack(b"\xb1\xff")


def test_decode_depth_limit() -> None:
    """Hostile nesting raises DecodeError, never RecursionError."""
    with pytest.raises(DecodeError, match="deeper"):
        unpack(b"\x91" * 100_000 + b"\xc0")
    with pytest.raises(DecodeError, match="deeper"):
        unpack(b"\x81\xb1a" * (DEFAULT_MAX_DEPTH + 1) + b"\xc0")
    assert unpack(b"\x91" * 3 + b"\xc0", max_depth=3) == [[[None]]]
    with pytest.raises(DecodeError):
        unpack(b"\x91" * 3 + b"\xc0", max_depth=2)


def test_declared_lengths_cannot_force_allocation() -> None:
    """Headers claiming more items than bytes, or than max_items, fail at once."""
    with pytest.raises(DecodeError, match="does not fit"):
        unpack(bytes.fromhex("ddffffffff00"))
    with pytest.raises(DecodeError, match="does not fit"):
        unpack(bytes.fromhex("dfffffffff0000"))
    with pytest.raises(DecodeError, match="max_items"):
        unpack(bytes.fromhex("dc0003000000"), max_items=2)
    with pytest.raises(DecodeError):
        unpack(bytes.fromhex("dbffffffff00"))


# ---------------------------------------------------------------------- properties

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


def expected(value: object) -> object:
    """What unpack(pack(value)) must return: whole floats in range as ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, list):
        return [expected(v) for v in value]
    if isinstance(value, dict):
        return {k: expected(v) for k, v in value.items()}
    return value


@given(values)
def test_pack_unpack_round_trip(value: object) -> None:
    """unpack(pack(v)) is v for every supported value (whole floats become ints)."""
    assert same(unpack(pack(value)), expected(value))


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_unpack_garbage_raises_only_decode_error(data: bytes) -> None:
    """Random bytes either decode or raise DecodeError, nothing else."""
    with contextlib.suppress(DecodeError):
        unpack(data)


@given(values, st.data())
def test_unpack_corrupted_value_raises_only_decode_error(
    value: object, data: st.DataObject
) -> None:
    """A packed value with a byte flipped or cut short raises only DecodeError."""
    packed = bytearray(pack(value))
    index = data.draw(st.integers(0, len(packed) - 1))
    packed[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packed)))
    with contextlib.suppress(DecodeError):
        unpack(bytes(packed[:cut]))


# ------------------------------------------------------------ bombs: whole-value budget


def nested_empty_arrays(items: int) -> bytes:
    """The repro's bomb: an array32 of fixarrays of 15 empty arrays (16 bytes per item)."""
    return b"\xdd" + struct.pack(">I", items) + (b"\x9f" + b"\x90" * 15) * items


def tree_of_arrays(levels: int) -> bytes:
    """Fixarrays of 15 nested ``levels`` deep: no header declares more than 15 items."""
    packed = b"\x90"
    for _ in range(levels):
        packed = b"\x9f" + packed * 15
    return packed


def objects_in(value: object) -> int:
    """The value itself plus every array item, map key and map value at any depth."""
    if isinstance(value, list):
        return 1 + sum(objects_in(item) for item in value)
    if isinstance(value, dict):
        return 1 + sum(1 + objects_in(item) for item in value.values())
    return 1


def peak_while(function: Any) -> tuple[int, float]:
    """Run ``function`` expecting DecodeError; return (tracemalloc peak bytes, seconds)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(DecodeError, match=r"object budget|max_objects"):
            function()
        return tracemalloc.get_traced_memory()[1], time.monotonic() - started
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("value", "objects"),
    [(1, 1), (b"x" * 100, 1), ([], 1), ([1, [2]], 4), ({"a": [1]}, 4), ({"a": {}, "b": 2}, 5)],
)
def test_unpack_counted_counts_every_object(value: object, objects: int) -> None:
    """The count is the value plus every item, key and value at any depth."""
    assert unpack_counted(pack(value)) == (value, objects)


@given(values)
def test_object_budget_is_exact(value: object) -> None:
    """A value of N objects decodes with max_objects=N and raises with N - 1."""
    packed = pack(value)
    decoded, objects = unpack_counted(packed, max_objects=None)
    assert objects == objects_in(decoded)
    assert unpack_counted(packed, max_objects=objects)[1] == objects
    if objects > 1:
        with pytest.raises(DecodeError):
            unpack(packed, max_objects=objects - 1)


def test_nested_empty_arrays_bomb_raises_at_the_header() -> None:
    """The repro's 4 MiB bomb (262144 x 16 objects) raises before decoding an item."""
    bomb = nested_empty_arrays(262_144)
    peak, seconds = peak_while(lambda: unpack(bomb, max_objects=200_000))
    assert peak < 1024 * 1024  # the header's count is checked before anything is built
    assert seconds < 1.0


def test_tree_bomb_is_bounded_across_the_whole_value() -> None:
    """No container is large, yet the whole value's budget stops a 0.8 MB tree early.

    Unbounded, it decodes into 813616 lists (~60 MiB). With max_objects=50_000
    decoding stops after ~50k objects, holding a few MiB.
    """
    bomb = tree_of_arrays(5)  # 813616 arrays in 813616 bytes
    assert len(bomb) > 800_000
    peak, seconds = peak_while(lambda: unpack(bomb, max_objects=50_000))
    assert peak < 50_000 * 100 + 1024 * 1024  # at most ~100 bytes per object counted
    assert seconds < 5.0


def test_default_budget_stops_a_bomb() -> None:
    """Even without arguments, unpack() stops a 12 MiB tree at DEFAULT_MAX_OBJECTS."""
    bomb = tree_of_arrays(6)  # 12.2 M empty lists unbounded: ~780 MiB
    started = time.monotonic()
    with pytest.raises(DecodeError, match="object budget"):
        unpack(bomb)
    assert time.monotonic() - started < 20.0  # ~1 s idle; bounded by the budget, not the input
    assert len(bomb) > DEFAULT_MAX_OBJECTS


def test_many_tiny_items_count_too() -> None:
    """A flat array of one-byte items is refused from its header once over budget."""
    flat = b"\xdc" + struct.pack(">H", 60_000) + b"\x00" * 60_000
    assert len(unpack(flat, max_objects=60_001)) == 60_000  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="object budget"):
        unpack(flat, max_objects=60_000)


# ------------------------------------------------------------ the real JS package

SUPPORT = Path(__file__).resolve().parents[2] / "support"
JS_ROUND_TRIP = """
import { pack, unpack } from "peerjs-js-binarypack";
import fs from "fs";
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const show = (x) => JSON.stringify(x, (k, v) =>
  v instanceof ArrayBuffer ? {bytes: Buffer.from(v).toString("hex")} :
  v === Infinity ? "Infinity" : v === -Infinity ? "-Infinity" : v);
const decoded = input.py.map((h) => {
  const b = Buffer.from(h, "hex");
  return show(unpack(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)));
});
const packed = [];
for (const v of [NaN, -2147483649, 1e15, {b: new Uint8Array([1, 2])}]) {
  packed.push(Buffer.from(await pack(v)).toString("hex"));
}
console.log(JSON.stringify({decoded, packed}));
"""


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_real_js_binarypack_agrees() -> None:
    """js-binarypack 2.1.0 decodes our quirk encodings exactly, and we decode its output."""
    cases: list[tuple[object, object]] = [
        (-2147483649, -2147483649),
        (-MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER),
        (MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
        (-0.0, 0),
        (1e300, 1e300),
        (math.inf, "Infinity"),
        ({1: [b"\x00\xff", None]}, {"1": [{"bytes": "00ff"}, None]}),
        ("é" * 40000, "é" * 40000),
    ]
    argument = json.dumps({"py": [pack(value).hex() for value, _ in cases]})
    done = subprocess.run(
        ["node", "--input-type=module", "-e", JS_ROUND_TRIP],
        input=argument,
        cwd=SUPPORT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result = json.loads(done.stdout)
    assert [json.loads(d) for d in result["decoded"]] == [want for _, want in cases]
    nan, negative, whole, nested = (unpack(bytes.fromhex(h)) for h in result["packed"])
    assert math.isnan(nan)  # type: ignore[arg-type]
    assert (negative, whole, nested) == (-2147483649, 10**15, {"b": b"\x01\x02"})
