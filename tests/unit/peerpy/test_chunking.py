"""PeerJS chunking: the Chunker's output and the bounded Reassembler."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerpy.binarypack import pack, unpack
from peerpy.chunking import CHUNK_MTU, Chunker, Reassembler, parse_chunk
from peerpy.exceptions import DecodeError

MiB = 1024 * 1024


def make_reassembler(**overrides: int) -> Reassembler:
    """A Reassembler with generous defaults, tightened by ``overrides``."""
    options = {
        "max_message_bytes": 8 * MiB,
        "max_partial_messages": 4,
        "max_buffered_bytes": 16 * MiB,
    }
    options.update(overrides)
    return Reassembler(**options)


def chunk_maps(packed: bytes, chunker: Chunker | None = None) -> list[dict[str, object]]:
    """Chunk ``packed`` and decode each chunk message back into its map."""
    messages = (chunker or Chunker()).chunk(packed)
    return [unpack(m) for m in messages]  # type: ignore[misc]


def chunk(message_id: int, n: int, total: int, data: object) -> dict[str, object]:
    """A hand-made chunk map."""
    return {"__peerData": message_id, "n": n, "data": data, "total": total}


FULL = bytes(CHUNK_MTU)


# ------------------------------------------------------------------------- Chunker


def test_chunker_threshold_is_strictly_greater_than_mtu() -> None:
    """PeerJS chunks only packed data longer than 16300 bytes."""
    chunker = Chunker()
    assert not chunker.needs_chunking(bytes(CHUNK_MTU))
    assert chunker.needs_chunking(bytes(CHUNK_MTU + 1))


def test_chunker_message_ids_count_from_one() -> None:
    """Each chunked message takes the next id, starting at 1 per Chunker."""
    chunker = Chunker()
    assert chunker.next_id == 1
    first = chunk_maps(bytes(20000), chunker)
    second = chunk_maps(bytes(40000), chunker)
    assert {c["__peerData"] for c in first} == {1}
    assert {c["__peerData"] for c in second} == {2}
    assert chunker.next_id == 3
    assert Chunker().next_id == 1


def test_chunker_slices_and_fields() -> None:
    """Slices are MTU-sized except the last; n counts from 0; total is the count."""
    packed = bytes(range(256)) * 200  # 51200 bytes -> 4 chunks
    maps = chunk_maps(packed)
    assert [m["n"] for m in maps] == [0, 1, 2, 3]
    assert {m["total"] for m in maps} == {4}
    assert [len(m["data"]) for m in maps] == [16300, 16300, 16300, 2300]  # type: ignore[arg-type]
    assert b"".join(m["data"] for m in maps) == packed  # type: ignore[misc]
    assert list(maps[0]) == ["__peerData", "n", "data", "total"]


def test_chunker_rejects_bad_chunk_size() -> None:
    """A chunk size below 1 is a programming error."""
    with pytest.raises(ValueError, match="chunk_size"):
        Chunker(0)


# --------------------------------------------------------------------- Reassembler


def test_reassembles_in_order_and_out_of_order() -> None:
    """Chunks arriving in any order give back the packed bytes once, at the last one."""
    packed = pack(bytes(range(256)) * 300)
    maps = chunk_maps(packed)
    reassembler = make_reassembler()
    results = [reassembler.add(m) for m in reversed(maps)]
    assert results[:-1] == [None] * (len(maps) - 1)
    assert results[-1] == packed
    assert reassembler.pending_messages == 0
    assert reassembler.buffered_bytes == 0


def test_interleaved_messages() -> None:
    """Two messages whose chunks interleave both complete."""
    chunker = Chunker()
    a, b = pack(b"a" * 40000), pack(b"b" * 40000)
    maps_a, maps_b = chunk_maps(a, chunker), chunk_maps(b, chunker)
    reassembler = make_reassembler()
    out = []
    for x, y in zip(maps_a, maps_b, strict=True):
        out += [reassembler.add(x), reassembler.add(y)]
    assert [r for r in out if r is not None] == [a, b]


@given(st.integers(CHUNK_MTU + 1, 5 * CHUNK_MTU), st.randoms(use_true_random=False))
def test_any_arrival_order_reassembles(size: int, rnd: object) -> None:
    """Whatever the permutation of chunks, the message comes back exactly."""
    packed = bytes(i % 251 for i in range(size))
    maps = chunk_maps(packed)
    rnd.shuffle(maps)  # type: ignore[attr-defined]
    reassembler = make_reassembler()
    results = [reassembler.add(m) for m in maps]
    assert [r for r in results if r is not None] == [packed]


@pytest.mark.parametrize("total", [0, -1, -(2**40), 10**9, 2**53])
def test_hostile_total_is_refused(total: int) -> None:
    """total below 1 or above what max_message_bytes allows raises DecodeError."""
    with pytest.raises(DecodeError, match="total"):
        make_reassembler().add(chunk(1, 0, total, FULL))


@pytest.mark.parametrize("field", ["__peerData", "n", "total"])
@pytest.mark.parametrize("bad", ["2", 2.0, 2.5, None, True, [2], {"a": 1}])
def test_non_integer_fields_are_refused(field: str, bad: object) -> None:
    """__peerData, n and total must be integers (not bool, float or str)."""
    value = chunk(1, 0, 2, FULL)
    value[field] = bad
    with pytest.raises(DecodeError, match=field):
        make_reassembler().add(value)


@pytest.mark.parametrize("field", ["__peerData", "n", "total", "data"])
def test_missing_fields_are_refused(field: str) -> None:
    """A chunk lacking any of its four fields raises DecodeError."""
    value = chunk(1, 0, 2, FULL)
    del value[field]
    with pytest.raises(DecodeError):
        make_reassembler().add(value)


@pytest.mark.parametrize("message_id", [0, -3])
def test_message_id_must_be_positive(message_id: int) -> None:
    """Message ids count from 1."""
    with pytest.raises(DecodeError, match="positive"):
        make_reassembler().add(chunk(message_id, 0, 2, FULL))


@pytest.mark.parametrize("n", [-1, 2, 3, 10**12])
def test_index_out_of_range_is_refused(n: int) -> None:
    """n must satisfy 0 <= n < total."""
    with pytest.raises(DecodeError, match="index"):
        make_reassembler().add(chunk(1, n, 2, FULL))


def test_data_must_be_binary() -> None:
    """A slice that is a string (or anything but bytes) raises DecodeError."""
    with pytest.raises(DecodeError, match="binary"):
        make_reassembler().add(chunk(1, 1, 2, "x" * 10))


@pytest.mark.parametrize(
    ("n", "size"), [(0, CHUNK_MTU - 1), (0, CHUNK_MTU + 1), (1, CHUNK_MTU + 1), (1, 0)]
)
def test_chunk_size_mismatch_is_refused(n: int, size: int) -> None:
    """Non-last slices must be exactly the MTU; the last one 1..MTU bytes."""
    with pytest.raises(DecodeError, match="bytes"):
        make_reassembler().add(chunk(1, n, 2, bytes(size)))


def test_duplicate_chunk_is_refused_and_message_dropped() -> None:
    """The same chunk twice raises DecodeError and frees that message's slices."""
    reassembler = make_reassembler()
    reassembler.add(chunk(1, 0, 3, FULL))
    with pytest.raises(DecodeError, match="duplicate"):
        reassembler.add(chunk(1, 0, 3, FULL))
    assert reassembler.pending_messages == 0
    assert reassembler.buffered_bytes == 0


def test_changed_total_is_refused() -> None:
    """All chunks of one message must agree on total."""
    reassembler = make_reassembler()
    reassembler.add(chunk(1, 0, 3, FULL))
    with pytest.raises(DecodeError, match="changed"):
        reassembler.add(chunk(1, 1, 4, FULL))


def test_chunk_of_delivered_message_is_refused() -> None:
    """A late duplicate of an already delivered message does not start a new one."""
    reassembler = make_reassembler()
    reassembler.add(chunk(7, 0, 2, FULL))
    assert reassembler.add(chunk(7, 1, 2, b"x")) == FULL + b"x"
    with pytest.raises(DecodeError, match="already delivered"):
        reassembler.add(chunk(7, 1, 2, b"x"))
    assert reassembler.pending_messages == 0


def test_missing_chunks_are_reported_at_close() -> None:
    """check_complete() names the messages still missing chunks, then forgets them."""
    reassembler = make_reassembler()
    reassembler.add(chunk(1, 0, 3, FULL))
    reassembler.add(chunk(2, 2, 3, b"x"))
    with pytest.raises(DecodeError, match="message 1: 2 missing, message 2: 2 missing"):
        reassembler.check_complete()
    assert reassembler.pending_messages == 0
    reassembler.check_complete()  # nothing left


def test_too_many_partial_messages() -> None:
    """Starting more messages than max_partial_messages raises DecodeError."""
    reassembler = make_reassembler(max_partial_messages=3)
    for message_id in (1, 2, 3):
        reassembler.add(chunk(message_id, 0, 2, FULL))
    with pytest.raises(DecodeError, match="in progress"):
        reassembler.add(chunk(4, 0, 2, FULL))
    assert reassembler.pending_messages == 3
    assert reassembler.add(chunk(1, 1, 2, b"z")) == FULL + b"z"  # the others still work


def test_total_buffered_bytes_cap() -> None:
    """Slices held across partial messages cannot exceed max_buffered_bytes."""
    reassembler = make_reassembler(max_buffered_bytes=3 * CHUNK_MTU)
    reassembler.add(chunk(1, 0, 10, FULL))
    reassembler.add(chunk(1, 1, 10, FULL))
    reassembler.add(chunk(2, 0, 10, FULL))
    assert reassembler.buffered_bytes == 3 * CHUNK_MTU
    with pytest.raises(DecodeError, match="exceed"):
        reassembler.add(chunk(2, 1, 10, FULL))
    assert reassembler.buffered_bytes == 2 * CHUNK_MTU  # message 2 was dropped


def test_message_size_cap() -> None:
    """A message cannot declare or fill more than max_message_bytes."""
    reassembler = make_reassembler(max_message_bytes=2 * CHUNK_MTU + 10)
    with pytest.raises(DecodeError, match="total 4"):
        reassembler.add(chunk(1, 0, 4, FULL))
    reassembler.add(chunk(2, 0, 3, FULL))
    reassembler.add(chunk(2, 1, 3, FULL))
    with pytest.raises(DecodeError, match="exceeds"):
        reassembler.add(chunk(2, 2, 3, bytes(11)))
    reassembler.add(chunk(3, 0, 3, FULL))
    reassembler.add(chunk(3, 1, 3, FULL))
    assert reassembler.add(chunk(3, 2, 3, bytes(10))) == FULL + FULL + bytes(10)


def test_single_chunk_message_is_accepted() -> None:
    """total == 1 (not produced by PeerJS, but harmless) completes at once."""
    assert make_reassembler().add(chunk(1, 0, 1, b"abc")) == b"abc"


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "__peerData": st.integers(-3, 3) | st.text(max_size=2) | st.none(),
            "n": st.integers(-3, 5) | st.floats(),
            "total": st.integers(-3, 5) | st.binary(max_size=2),
            "data": st.binary(max_size=20) | st.integers(),
        },
    ),
)
def test_random_chunk_maps_raise_only_decode_error(value: dict[str, object]) -> None:
    """Any malformed chunk map is a DecodeError, never another exception."""
    reassembler = make_reassembler()
    with contextlib.suppress(DecodeError):
        reassembler.add(value)


# -------------------------------------------------------------------- parse_chunk


def test_parse_chunk_reads_the_peerjs_layout() -> None:
    """The fast path reads id, n, total and a view of the slice of a PeerJS chunk."""
    packed = bytes(range(256)) * 100
    messages = Chunker().chunk(packed)
    fields = parse_chunk(messages[1])
    assert fields is not None
    message_id, n, total, data = fields
    assert (message_id, n, total) == (1, 1, 2)
    assert bytes(data) == packed[CHUNK_MTU:]


@pytest.mark.parametrize(
    "value",
    [
        {"n": 0, "__peerData": 1, "data": b"x", "total": 1},  # other key order
        {"__peerData": 0, "n": 0, "data": b"x", "total": 1},  # falsy id: plain data
        {"__peerData": 1, "n": 0, "data": "x", "total": 1},  # str slice
        {"__peerData": 1, "n": 0, "data": b"x", "total": 1, "extra": 1},
        {"__peerData": 1, "n": -1, "data": b"x", "total": 1},
    ],
)
def test_parse_chunk_leaves_other_layouts_to_unpack(value: dict[str, object]) -> None:
    """Anything but the exact PeerJS layout returns None (the generic path decides)."""
    assert parse_chunk(pack(value)) is None


@given(
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.binary(max_size=300),
    st.integers(0, 40),
)
def test_parse_chunk_agrees_with_unpack(
    message_id: int, n: int, total: int, data: bytes, cut: int
) -> None:
    """On any (possibly truncated) chunk-shaped message the fast path matches unpack()."""
    message = pack({"__peerData": message_id, "n": n, "data": data, "total": total})
    message = message[: len(message) - cut] if cut else message
    fields = parse_chunk(message)
    if fields is None:
        return
    assert message_id >= 1
    decoded = unpack(message)
    assert decoded == {
        "__peerData": fields[0],
        "n": fields[1],
        "data": fields[3],
        "total": fields[2],
    }


def test_reassembler_accepts_other_key_orders() -> None:
    """Chunks whose map keys come in another order still reassemble."""
    reassembler = make_reassembler()
    reassembler.add(unpack(pack({"total": 2, "data": FULL, "n": 0, "__peerData": 9})))  # type: ignore[arg-type]
    assert reassembler.add({"data": b"!", "total": 2, "__peerData": 9, "n": 1}) == FULL + b"!"


def test_buffered_bytes_count_every_chunk_held() -> None:
    """buffered_bytes is the sum of the slices held (what the receive buffer counts)."""
    reassembler = make_reassembler()
    for n in range(5):
        reassembler.add(chunk(1, n, 6, FULL))
        assert reassembler.buffered_bytes == (n + 1) * CHUNK_MTU
    reassembler.add(chunk(2, 0, 2, FULL))
    assert reassembler.buffered_bytes == 6 * CHUNK_MTU
    assert reassembler.add(chunk(1, 5, 6, b"end")) == FULL * 5 + b"end"
    assert reassembler.buffered_bytes == CHUNK_MTU  # message 1 handed over, 2 still held


def test_max_message_bytes_can_be_lowered_mid_message() -> None:
    """Lowering max_message_bytes refuses the rest of a message that no longer fits."""
    reassembler = make_reassembler()
    reassembler.add(chunk(1, 0, 4, FULL))
    reassembler.max_message_bytes = 2 * CHUNK_MTU
    with pytest.raises(DecodeError, match="outside"):
        reassembler.add(chunk(1, 1, 4, FULL))
    assert reassembler.buffered_bytes == 0  # the message was dropped
    assert reassembler.add(chunk(2, 0, 1, b"small")) == b"small"
    with pytest.raises(ValueError, match="positive"):
        reassembler.max_message_bytes = 0
