"""Serializers: round trips, close control, size rules, MsgPack streaming, limits."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from peerpy.binarypack import MAX_SAFE_INTEGER, pack
from peerpy.chunking import CHUNK_MTU, Chunker
from peerpy.exceptions import DecodeError, EncodeError, MessageTooBigError, UsageError
from peerpy.serialization import (
    CLOSE,
    JSON_MAX_BYTES,
    MSGPACK_SLICE_BYTES,
    OBJECT_COST,
    SERIALIZATIONS,
    Limits,
    Serializer,
    create_serializer,
    serializer_for_wire_name,
)

from ...helpers.equality import same

BIG = 5_000_000


def transfer(sender: Serializer, receiver: Serializer, value: object) -> list[object]:
    """Encode ``value`` with ``sender`` and feed every message to ``receiver``."""
    out: list[object] = []
    for message in sender.encode(value):
        out += receiver.decode(message)
    return out


def pair(name: str, limits: Limits | None = None) -> tuple[Serializer, Serializer]:
    """Two fresh serializers (two ends of one connection)."""
    return create_serializer(name, limits=limits), create_serializer(name, limits=limits)


# ------------------------------------------------------------------------ factories


@pytest.mark.parametrize(
    ("name", "wire", "reliable"),
    [
        ("default", "binary", False),
        ("binary", "binary", False),
        ("binary-utf8", "binary", False),
        ("json", "json", False),
        ("raw", "raw", False),
        ("MsgPack", "MsgPack", True),
    ],
)
def test_create_serializer_names(name: str, wire: str, reliable: bool) -> None:
    """Each option name maps to its wire name; only MsgPack needs a reliable channel."""
    serializer = create_serializer(name)
    assert serializer.name == ("binary" if name == "default" else name)
    assert serializer.wire_name == wire
    assert serializer.reliable_required is reliable
    assert name in SERIALIZATIONS
    assert serializer_for_wire_name(name).wire_name == wire


@pytest.mark.parametrize("name", ["msgpack", "JSON", "", "binary_utf8", "bson"])
def test_unknown_option_name_lists_valid_names(name: str) -> None:
    """An unknown option is a UsageError that lists every valid name."""
    with pytest.raises(UsageError, match="binary-utf8, json, raw, MsgPack"):
        create_serializer(name)


@pytest.mark.parametrize("wire", ["msgpack", "bson", "", None, 3])
def test_unknown_wire_name_is_a_decode_error(wire: object) -> None:
    """An OFFER naming an unknown serialization is the remote's fault: DecodeError."""
    with pytest.raises(DecodeError, match="serialization"):
        serializer_for_wire_name(wire)  # type: ignore[arg-type]


def test_limits_are_validated() -> None:
    """Limits refuses zero, negative and non-int caps."""
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="max_depth"):
            Limits(max_depth=bad)  # type: ignore[arg-type]
    assert Limits().max_message_bytes == 64 * 1024 * 1024


# ---------------------------------------------------------------------- close control

CLOSE_BYTES = {
    "binary": "81ba5f5f706565724461746181b474797065b5636c6f7365",
    "json": b'{"__peerData":{"type":"close"}}'.hex(),
    "MsgPack": "81aa5f5f706565724461746181a474797065a5636c6f7365",
}


@pytest.mark.parametrize("name", ["binary", "binary-utf8", "json", "MsgPack"])
def test_close_control_bytes_and_detection(name: str) -> None:
    """encode_close() gives the spec's bytes; decode() of them returns CLOSE."""
    sender, receiver = pair(name)
    messages = sender.encode_close()
    assert [m.hex() for m in messages] == [CLOSE_BYTES.get(name, CLOSE_BYTES["binary"])]  # type: ignore[union-attr]
    assert receiver.decode(messages[0]) == [CLOSE]


def test_raw_cannot_express_close() -> None:
    """raw has no in-band close: encode_close() raises a UsageError (EncodeError)."""
    with pytest.raises(EncodeError, match="close"):
        create_serializer("raw").encode_close()


@pytest.mark.parametrize("name", ["binary", "json", "MsgPack"])
def test_close_shaped_user_value_is_refused(name: str) -> None:
    """Sending a value the remote would take for the close request is refused."""
    with pytest.raises(EncodeError, match="__peerData"):
        create_serializer(name).encode({"__peerData": {"type": "close"}, "x": 1})


def test_close_detection_mirrors_peerjs() -> None:
    """Extra keys do not matter; a non-close __peerData in JSON/MsgPack is just data."""
    assert create_serializer("json").decode(b'{"__peerData":{"type":"close"},"x":1}') == [CLOSE]
    assert create_serializer("json").decode(b'{"__peerData":{"type":"open"}}') == [
        {"__peerData": {"type": "open"}}
    ]
    data = msgpack.packb({"__peerData": 5})
    assert create_serializer("MsgPack").decode(data) == [{"__peerData": 5}]


def test_binary_close_inside_a_chunked_message() -> None:
    """A reassembled message that unpacks to the close request is CLOSE too."""
    receiver = create_serializer("binary")
    (only,) = Chunker().chunk(pack({"__peerData": {"type": "close"}}))
    assert receiver.decode(only) == [CLOSE]


def test_binary_nested_chunk_is_refused() -> None:
    """A reassembled message that is itself a chunk raises DecodeError (no recursion)."""
    (inner,) = Chunker().chunk(pack(b"x" * 200))
    (outer,) = Chunker().chunk(inner)
    with pytest.raises(DecodeError, match="itself a chunk"):
        create_serializer("binary").decode(outer)


def test_binary_reserved_peerdata_key() -> None:
    """A top-level map with a JS-truthy __peerData is reserved; a falsy one is data."""
    sender, receiver = pair("binary")
    for reserved in (1, "x", [], {}, {"type": "other"}):
        with pytest.raises(EncodeError, match="reserved"):
            sender.encode({"__peerData": reserved})
    for falsy in (0, "", None, False, math.nan):
        result = transfer(sender, receiver, {"__peerData": falsy})
        assert list(result[0]) == ["__peerData"]  # type: ignore[call-overload]


# --------------------------------------------------------------------------- binary


def test_binary_message_ids_start_at_one_per_connection() -> None:
    """Each serializer instance numbers its chunked messages from 1."""
    for _ in range(2):
        serializer = create_serializer("binary")
        first = serializer.encode(b"x" * 20000)[0]
        second = serializer.encode(b"x" * 20000)[0]
        assert first.startswith(bytes.fromhex("84ba") + b"__peerData" + b"\x01")  # type: ignore[arg-type]
        assert second.startswith(bytes.fromhex("84ba") + b"__peerData" + b"\x02")  # type: ignore[arg-type]


def test_binary_small_values_are_one_unchunked_message() -> None:
    """A value packing to at most 16300 bytes is sent as one plain BinaryPack message."""
    serializer = create_serializer("binary")
    assert serializer.encode(b"x" * (CHUNK_MTU - 3)) == [pack(b"x" * (CHUNK_MTU - 3))]
    assert len(serializer.encode(b"x" * (CHUNK_MTU - 2))) == 2


@pytest.mark.parametrize("name", ["binary", "raw", "MsgPack"])
def test_five_megabyte_bytes_round_trip(name: str) -> None:
    """A 5 MB bytes value arrives whole, as bytes, through binary, raw and MsgPack."""
    payload = os.urandom(BIG)
    sender, receiver = pair(name)
    messages = sender.encode(payload)
    limit = {"binary": CHUNK_MTU + 40, "MsgPack": MSGPACK_SLICE_BYTES, "raw": BIG}[name]
    assert max(len(m) for m in messages) <= limit
    out: list[object] = []
    for message in messages:
        out += receiver.decode(message)
    assert out == [payload]
    assert type(out[0]) is bytes
    receiver.finish()


def test_binary_out_of_order_chunks() -> None:
    """Chunks of an unordered channel may arrive in any order."""
    sender, receiver = pair("binary")
    value = {"blob": os.urandom(100_000), "n": [1, 2, 3]}
    messages = sender.encode(value)
    out: list[object] = []
    for message in reversed(messages):
        out += receiver.decode(message)
    assert out == [value]


def test_binary_text_frame_is_refused() -> None:
    """BinaryPack must arrive as binary frames (PeerJS would emit a bogus 0)."""
    with pytest.raises(DecodeError, match="text frame"):
        create_serializer("binary").decode("hi")


def test_binary_finish_reports_missing_chunks() -> None:
    """finish() raises DecodeError when a chunked message never completed."""
    sender, receiver = pair("binary")
    messages = sender.encode(b"x" * 40000)
    for message in messages[:-1]:
        assert receiver.decode(message) == []
    with pytest.raises(DecodeError, match="missing"):
        receiver.finish()


def test_binary_limits_apply() -> None:
    """Reassembly honours the Limits given to the serializer."""
    limits = Limits(max_message_bytes=50_000)
    sender, receiver = pair("binary", limits)
    with pytest.raises(DecodeError, match="total"):
        transfer(sender, receiver, b"x" * 70_000)
    assert transfer(sender, receiver, b"y" * 40_000) == [b"y" * 40_000]
    with pytest.raises(DecodeError, match="exceeds"):
        create_serializer("binary", limits=Limits(max_message_bytes=10)).decode(pack("x" * 20))


# ----------------------------------------------------------------------------- json


def test_json_is_compact_utf8_in_binary_frames() -> None:
    """json sends JSON.stringify-style UTF-8 bytes (never a text frame)."""
    assert create_serializer("json").encode({"a": [1, "é"], "b": None}) == [
        '{"a":[1,"é"],"b":null}'.encode()
    ]


def test_json_size_rule() -> None:
    """16299 encoded bytes are sent; 16300 or more raise MessageTooBigError."""
    serializer = create_serializer("json")
    assert len(serializer.encode("x" * (JSON_MAX_BYTES - 3))[0]) == JSON_MAX_BYTES - 1
    with pytest.raises(MessageTooBigError, match="16300"):
        serializer.encode("x" * (JSON_MAX_BYTES - 2))
    with pytest.raises(MessageTooBigError):
        serializer.encode("é" * 8150)  # 16300 UTF-8 bytes + quotes


@pytest.mark.parametrize("value", [math.nan, math.inf, [-math.inf], b"bytes", {1.5: 1}, {None: 1}])
def test_json_refuses_what_it_cannot_carry(value: object) -> None:
    """nan/inf (JS would send null), bytes and non-str/int keys raise EncodeError."""
    with pytest.raises(EncodeError):
        create_serializer("json").encode(value)


@pytest.mark.parametrize(
    "message",
    [b"", b"{", b"NaN", b"[Infinity]", b"\xff\xfe", b'{"a":1}x', "text frame", b"[" * 100_000],
)
def test_json_bad_input_is_a_decode_error(message: bytes | str) -> None:
    """Invalid JSON, NaN/Infinity, bad UTF-8, text frames and deep nesting: DecodeError."""
    with pytest.raises(DecodeError):
        create_serializer("json").decode(message)


def test_json_depth_limit_and_bom() -> None:
    """Nesting beyond max_depth is refused; a UTF-8 BOM is skipped like TextDecoder does."""
    serializer = create_serializer("json", limits=Limits(max_depth=3))
    assert serializer.decode(b"[[[1]]]") == [[[[1]]]]
    with pytest.raises(DecodeError, match="deeper"):
        serializer.decode(b"[[[[1]]]]")
    assert serializer.decode(b"\xef\xbb\xbf[1]") == [[1]]


# ------------------------------------------------------------------------------ raw


def test_raw_passes_values_through() -> None:
    """str stays a text frame, bytes-likes become bytes; decode returns them as-is."""
    serializer = create_serializer("raw")
    assert serializer.encode("hé") == ["hé"]
    assert serializer.encode(bytearray(b"ab")) == [b"ab"]
    assert serializer.encode(memoryview(b"cd")) == [b"cd"]
    assert serializer.decode("hé") == ["hé"]
    assert serializer.decode(b"\x00\xff") == [b"\x00\xff"]


@pytest.mark.parametrize("value", [1, None, [b"x"], {"a": 1}])
def test_raw_refuses_other_values(value: object) -> None:
    """raw carries only str and bytes-likes."""
    with pytest.raises(EncodeError, match="raw"):
        create_serializer("raw").encode(value)


def test_raw_size_cap() -> None:
    """A received raw message over max_message_bytes raises DecodeError."""
    with pytest.raises(DecodeError, match="exceeds"):
        create_serializer("raw", limits=Limits(max_message_bytes=3)).decode(b"abcd")


# -------------------------------------------------------------------------- MsgPack


def test_msgpack_slices_are_the_plain_msgpack_stream() -> None:
    """Slices are <= 32768 bytes and join to standard msgpack bytes."""
    value = {"blob": bytes(100_000), "t": "x"}
    messages = create_serializer("MsgPack").encode(value)
    assert [len(m) for m in messages] == [32768, 32768, 32768, 1711]
    assert b"".join(messages) == msgpack.packb(value, use_bin_type=True)  # type: ignore[arg-type]


@settings(max_examples=50)
@given(st.lists(st.integers(0, 5000), max_size=8))
def test_msgpack_decodes_across_arbitrary_splits(cuts: list[int]) -> None:
    """Message boundaries carry no meaning: any split of the stream decodes the same."""
    values = [{"a": 1}, "x" * 300, b"\x00" * 1000, [1, 2.5, None], 7]
    stream = b"".join(msgpack.packb(v, use_bin_type=True) for v in values)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    receiver = create_serializer("MsgPack")
    out: list[object] = []
    for piece in pieces:
        out += receiver.decode(piece)
    assert out == values
    receiver.finish()


def test_msgpack_finish_reports_a_cut_stream() -> None:
    """finish() raises DecodeError if the stream stopped inside a value."""
    receiver = create_serializer("MsgPack")
    assert receiver.decode(msgpack.packb("hello")[:3]) == []
    with pytest.raises(DecodeError, match="pending"):
        receiver.finish()


def test_msgpack_garbage_breaks_the_stream() -> None:
    """After a decode error the stream is out of sync, so later messages fail too."""
    receiver = create_serializer("MsgPack")
    with pytest.raises(DecodeError):
        receiver.decode(b"\xc1")
    with pytest.raises(DecodeError, match="broken"):
        receiver.decode(msgpack.packb(1))


@pytest.mark.parametrize(
    "message",
    [
        msgpack.packb(msgpack.ExtType(5, b"x")),
        b"\xa1\xff",  # invalid UTF-8
        b"\x81\xc4\x01k\x01",  # binary map key
        b"\x91" * 2000 + b"\x01",  # deeper than msgpack's stack
        b"\xdd\xff\xff\xff\xff",  # array of 2**32 - 1 items
        "text frame",
    ],
)
def test_msgpack_bad_input_is_a_decode_error(message: bytes | str) -> None:
    """Unknown extensions, bad UTF-8, odd keys, deep nesting and huge headers: DecodeError."""
    with pytest.raises(DecodeError):
        create_serializer("MsgPack").decode(message)


def test_msgpack_limits() -> None:
    """max_depth and max_message_bytes bound what one stream value may take."""
    serializer = create_serializer("MsgPack", limits=Limits(max_depth=2))
    assert serializer.decode(b"\x91\x91\x01") == [[[1]]]
    with pytest.raises(DecodeError, match="deeper"):
        serializer.decode(b"\x91\x91\x91\x01")
    small = create_serializer("MsgPack", limits=Limits(max_message_bytes=100))
    assert small.decode(msgpack.packb(b"x" * 50)) == [b"x" * 50]
    assert small.decode(b"\xc5\x01\x00") == []  # bin16 of 256 bytes: header only
    assert small.decode(b"x" * 90) == []
    with pytest.raises(DecodeError, match="max_message_bytes"):
        small.decode(b"x" * 90)


def test_msgpack_dates_and_int_keys() -> None:
    """Aware datetimes travel as the timestamp extension (a JS Date); int keys become str."""
    sender, receiver = pair("MsgPack")
    when = datetime.datetime(2025, 6, 7, 12, 0, 1, 500, tzinfo=datetime.timezone.utc)
    assert transfer(sender, receiver, {"at": when, 3: "x"}) == [{"at": when, "3": "x"}]
    with pytest.raises(EncodeError, match="timezone"):
        sender.encode(datetime.datetime(2025, 1, 1))
    assert receiver.decode(msgpack.packb({1: 2}, strict_types=False)) == [{"1": 2}]


# ------------------------------------------------------------------ shared behaviour


@pytest.mark.parametrize("name", ["binary", "json", "MsgPack"])
@pytest.mark.parametrize(
    "value", [2**53, -(2**53), {1, 2}, object(), {(1,): 2}, {True: 1}, {1: "a", "1": "b"}]
)
def test_unsupported_values_raise_encode_error(name: str, value: object) -> None:
    """Unsafe ints, unsupported types and unusable keys raise EncodeError everywhere."""
    with pytest.raises(EncodeError):
        create_serializer(name).encode(value)


@pytest.mark.parametrize("name", ["binary", "json", "MsgPack"])
def test_encode_depth_limit(name: str) -> None:
    """Values nested deeper than max_depth (or cyclic) are refused when encoding."""
    serializer = create_serializer(name, limits=Limits(max_depth=4))
    assert serializer.encode([[[[1]]]])
    with pytest.raises(EncodeError, match="deeper"):
        serializer.encode([[[[[1]]]]])
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(EncodeError):
        create_serializer(name).encode(cyclic)


def test_modules_import_no_io_library() -> None:
    """The serialization layer is sans-I/O: it pulls in no anyio/asyncio/aiortc/websockets."""
    code = (
        "import sys, peerpy.serialization, peerpy.binarypack, peerpy.chunking;"
        "bad = [m for m in ('anyio', 'aiortc', 'websockets', 'asyncio') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------- properties

safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
keys = st.text(max_size=8).filter(lambda k: k != "__peerData") | st.integers(-1000, 1000)


def values_of(*extra: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Nested values built from the common scalars plus ``extra`` ones."""
    base = st.one_of(
        st.none(), st.booleans(), safe_ints, st.floats(allow_nan=False), st.text(), *extra
    )
    return st.recursive(
        base,
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.tuples(inner, inner)
            | st.dictionaries(keys, inner, max_size=5)
        ),
        max_leaves=20,
    )


def normal(value: object, *, whole_floats_as_int: bool) -> object:
    """What a value comes back as: tuples as lists, int keys as str, maybe floats as int."""
    if (
        isinstance(value, float)
        and whole_floats_as_int
        and value.is_integer()
        and abs(value) <= MAX_SAFE_INTEGER
    ):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [normal(v, whole_floats_as_int=whole_floats_as_int) for v in value]
    if isinstance(value, dict):
        return {
            str(k): normal(v, whole_floats_as_int=whole_floats_as_int) for k, v in value.items()
        }
    return value


def unique_keys(value: object) -> bool:
    """Whether no map has both an int key and its decimal string."""
    if isinstance(value, (list, tuple)):
        return all(unique_keys(v) for v in value)
    if isinstance(value, dict):
        return len({str(k) for k in value}) == len(value) and all(
            unique_keys(v) for v in value.values()
        )
    return True


@given(values_of(st.binary(max_size=40)))
def test_binary_round_trip_property(value: object) -> None:
    """binary: decode(encode(v)) == v on the whole value space (whole floats as ints)."""
    assume(unique_keys(value))
    sender, receiver = pair("binary")
    assert same(transfer(sender, receiver, value)[0], normal(value, whole_floats_as_int=True))


@given(values_of(st.floats(allow_nan=False, allow_infinity=False)).filter(unique_keys))
def test_json_round_trip_property(value: object) -> None:
    """json: decode(encode(v)) == v for finite floats, str keys, no bytes."""
    assume(not _has_infinity(value))
    sender, receiver = pair("json")
    try:
        messages = sender.encode(value)
    except MessageTooBigError:
        assume(False)
    assert same(receiver.decode(messages[0])[0], normal(value, whole_floats_as_int=False))


@given(
    values_of(
        st.binary(max_size=40),
        st.datetimes(timezones=st.just(datetime.timezone.utc)),
    ).filter(unique_keys)
)
def test_msgpack_round_trip_property(value: object) -> None:
    """MsgPack: decode(encode(v)) == v, bytes and aware datetimes included."""
    sender, receiver = pair("MsgPack")
    assert same(transfer(sender, receiver, value)[0], normal(value, whole_floats_as_int=False))


@given(st.one_of(st.text(), st.binary()))
def test_raw_round_trip_property(value: str | bytes) -> None:
    """raw: str and bytes come back unchanged."""
    sender, receiver = pair("raw")
    assert same(transfer(sender, receiver, value), [value])


def _has_infinity(value: object) -> bool:
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, (list, tuple)):
        return any(_has_infinity(v) for v in value)
    if isinstance(value, dict):
        return any(_has_infinity(v) for v in value.values())
    return False


@settings(max_examples=300)
@given(
    st.sampled_from(["binary", "json", "MsgPack", "raw"]),
    st.lists(st.binary(max_size=48) | st.text(max_size=8), min_size=1, max_size=4),
)
def test_decoders_raise_only_decode_error_on_garbage(
    name: str, messages: list[bytes | str]
) -> None:
    """Any sequence of random messages either decodes or raises DecodeError."""
    receiver = create_serializer(name)
    for message in messages:
        with contextlib.suppress(DecodeError):
            receiver.decode(message)
    with contextlib.suppress(DecodeError):
        receiver.finish()


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {"__peerData": st.integers(-2, 3) | st.text(max_size=2)},
        optional={
            "n": st.integers(-2, 3) | st.floats(),
            "total": st.integers(-2, 3) | st.none(),
            "data": st.binary(max_size=10) | st.text(max_size=3),
        },
    )
)
def test_binary_hostile_chunk_maps_raise_only_decode_error(chunk: dict[str, object]) -> None:
    """Chunk-shaped maps with bad fields, sent as BinaryPack, raise only DecodeError."""
    receiver = create_serializer("binary")
    with contextlib.suppress(DecodeError):
        receiver.decode(pack(chunk))


# ------------------------------------------------------------ memory: whole-value budget


def tree_of_arrays(levels: int) -> bytes:
    """Fixarrays of 15 nested ``levels`` deep (valid msgpack and BinaryPack)."""
    packed = b"\x90"
    for _ in range(levels):
        packed = b"\x9f" + packed * 15
    return packed


def decode_all(serializer: Serializer, messages: list[bytes] | list[bytes | str]) -> None:
    """Feed every message to ``serializer``."""
    for message in messages:
        serializer.decode(message)


def traced_peak(function: Callable[[], object]) -> int:
    """Run ``function``, which must raise DecodeError; return its tracemalloc peak."""
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match=r"object budget|max_objects|max_array_len"):
            function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


MEMORY_LIMITS = Limits(max_objects=50_000)
#: A 0.8 MB tree of 813616 empty lists: ~60 MiB decoded without the budget.
TREE = tree_of_arrays(5)
#: What 50_000 objects may take, with slack for the decoder's own state.
BOUND = 50_000 * 100 + 2 * 1024 * 1024


def test_binary_chunked_bomb_is_bounded() -> None:
    """A nested-arrays bomb sent in PeerJS chunks stops at Limits.max_objects."""
    messages = Chunker().chunk(TREE)
    serializer = create_serializer("binary", limits=MEMORY_LIMITS)
    assert traced_peak(lambda: decode_all(serializer, messages)) < BOUND + 2 * len(TREE)


def test_msgpack_stream_bomb_is_bounded() -> None:
    """The same bomb as a MsgPack stream in 32 KiB slices stops at Limits.max_objects."""
    slices = [TREE[i : i + MSGPACK_SLICE_BYTES] for i in range(0, len(TREE), MSGPACK_SLICE_BYTES)]
    serializer = create_serializer("MsgPack", limits=MEMORY_LIMITS)
    assert traced_peak(lambda: decode_all(serializer, slices)) < BOUND
    with pytest.raises(DecodeError, match="broken"):
        serializer.decode(msgpack.packb(1))  # the stream cannot resync


def test_msgpack_header_beyond_the_budget_is_refused_at_once() -> None:
    """An array declaring more items than the value may hold is refused before msgpack
    preallocates it (the repro's array32 of 4 M items)."""
    bomb = b"\xdd" + (60_000).to_bytes(4, "big") + b"\x90" * 60_000
    serializer = create_serializer("MsgPack", limits=MEMORY_LIMITS)
    assert traced_peak(lambda: serializer.decode(bomb)) < 1024 * 1024


def test_json_bomb_is_refused_before_parsing() -> None:
    """A JSON text whose punctuation allows more than max_objects is not parsed."""
    bomb = b"[" + b"[]," * 60_000 + b"[]]"
    serializer = create_serializer("json", limits=MEMORY_LIMITS)
    assert traced_peak(lambda: serializer.decode(bomb)) < len(bomb) + 1024 * 1024


@pytest.mark.parametrize("name", ["binary", "MsgPack", "json"])
def test_many_tiny_items_count(name: str) -> None:
    """A flat list of small ints is counted item by item, across the whole value."""
    value = [[0] * 30_000, [1] * 30_000]
    # PeerJS never sends JSON this big, but a hostile remote may.
    messages = [json.dumps(value).encode()] if name == "json" else pair(name)[0].encode(value)
    receiver = create_serializer(name, limits=Limits(max_objects=60_003))  # 1 + 2 + 60_000
    assert [v for m in messages for v in receiver.decode(m)] == [value]
    tight = create_serializer(name, limits=Limits(max_objects=60_002))
    with pytest.raises(DecodeError, match=r"object budget|max_objects"):
        decode_all(tight, messages)


def test_msgpack_streamed_value_is_capped_by_max_message_bytes() -> None:
    """A value spread over many messages counts all its bytes, not the last message's."""
    limits = Limits(max_message_bytes=100_000)
    sender, receiver = create_serializer("MsgPack"), create_serializer("MsgPack", limits=limits)
    with pytest.raises(DecodeError, match="max_message_bytes"):
        transfer(sender, receiver, [12345] * 50_000)  # 150 kB of 3-byte items


@pytest.mark.parametrize("name", ["binary", "MsgPack", "json", "raw"])
def test_max_message_bytes_can_be_lowered_at_any_time(name: str) -> None:
    """Lowering max_message_bytes on a live serializer refuses larger messages from then on."""
    sender, receiver = create_serializer(name), create_serializer(name)
    assert transfer(sender, receiver, "x" * 3000) == ["x" * 3000]
    receiver.max_message_bytes = 1000
    assert transfer(sender, receiver, "y" * 500) == ["y" * 500]
    with pytest.raises(DecodeError, match="exceeds"):
        transfer(sender, receiver, "z" * 3000)


def test_lowering_max_message_bytes_applies_to_a_chunked_message_in_progress() -> None:
    """Chunks of a message already started are refused once it would pass the new cap."""
    sender, receiver = create_serializer("binary"), create_serializer("binary")
    first, second, _third = sender.encode(bytes(40_000))
    assert receiver.decode(first) == []
    receiver.max_message_bytes = 20_000
    with pytest.raises(DecodeError, match=r"exceeds|outside"):
        receiver.decode(second)


@pytest.mark.parametrize("name", ["binary", "MsgPack"])
def test_decoded_sizes_count_every_byte_and_object(name: str) -> None:
    """A value's accounted size is its encoded bytes plus OBJECT_COST per object,
    however many messages carried it; held_bytes covers what is incomplete."""
    sender, receiver = create_serializer(name), create_serializer(name)
    blob = bytes(100_000)
    messages = sender.encode(blob)
    assert len(messages) > 2
    for message in messages[:-1]:
        assert receiver.decode_sized(message) == []
    assert receiver.held_bytes >= 16_000 * (len(messages) - 1)
    [(value, size)] = receiver.decode_sized(messages[-1])
    assert value == blob
    assert receiver.held_bytes == 0
    assert 100_000 < size - OBJECT_COST <= 100_010  # the header of a bin value, 3 to 5 bytes


@settings(max_examples=100)
@given(values_of().filter(unique_keys))
def test_every_serialization_counts_the_same_objects(value: object) -> None:
    """binary, MsgPack and json count the same objects for the same value."""
    counts = set()
    for name in ("binary", "MsgPack", "json"):
        sender, receiver = create_serializer(name), create_serializer(name)
        try:
            messages = sender.encode(value)
        except (EncodeError, MessageTooBigError):
            continue
        sized = [item for message in messages for item in receiver.decode_sized(message)]
        [(_, size)] = sized
        encoded = sum(len(m) for m in messages) if name != "binary" or len(messages) == 1 else 0
        if encoded:
            counts.add((size - encoded) // OBJECT_COST)
    assert len(counts) <= 1


def test_normal_data_fits_the_default_budget() -> None:
    """Typical bulky values (500k ints, 20k records) decode with the default limits."""
    rows = [{"id": i, "name": f"user{i}", "tags": ["a", "b"]} for i in range(20_000)]
    for name in ("binary", "MsgPack"):
        for value in (list(range(500_000)), rows):
            sender, receiver = pair(name)
            assert transfer(sender, receiver, value) == [value]
