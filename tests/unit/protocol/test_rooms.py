"""Room messages parse and serialize the rooms extension's frames; names and metadata validate."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from peerpy_protocol.exceptions import (
    InvalidMetadataError,
    InvalidRoomError,
    ProtocolError,
    UsageError,
)
from peerpy_protocol.rooms import (
    MAX_NAME_LENGTH,
    OPEN_WITH_ROOMS,
    RoomError,
    RoomErrorType,
    RoomJoin,
    RoomLeave,
    RoomMembers,
    metadata_size,
    offers_rooms,
    parse,
    serialize,
    validate_metadata,
    validate_room_name,
    wants_rooms,
)

from tests.unit.peerpy.test_pure_modules import IMPURE, imported_after

#: Golden frames: the wire format fixed in docs/rooms.md, "Wire messages".
GOLDEN = [
    (
        RoomJoin("lobby", {"name": "Alice"}),
        '{"type":"ROOM-JOIN","payload":{"room":"lobby","metadata":{"name":"Alice"}}}',
    ),
    (RoomJoin("lobby"), '{"type":"ROOM-JOIN","payload":{"room":"lobby","metadata":null}}'),
    (
        RoomJoin("lobby", [1, "ü"], src="bob"),
        '{"type":"ROOM-JOIN","src":"bob","payload":{"room":"lobby","metadata":[1,"ü"]}}',
    ),
    (RoomLeave("lobby"), '{"type":"ROOM-LEAVE","payload":{"room":"lobby"}}'),
    (RoomLeave("lobby", src="bob"), '{"type":"ROOM-LEAVE","src":"bob","payload":{"room":"lobby"}}'),
    (
        RoomMembers("lobby", {"bob": {"n": 1}, "carol": None}),
        '{"type":"ROOM-MEMBERS","payload":{"room":"lobby","members":{"bob":{"n":1},"carol":null}}}',
    ),
    (
        RoomError("lobby", RoomErrorType.ROOM_FULL, "room is full (64 members)"),
        '{"type":"ROOM-ERROR","payload":{"room":"lobby","type":"room-full",'
        '"msg":"room is full (64 members)"}}',
    ),
]


@pytest.mark.parametrize(("message", "frame"), GOLDEN)
def test_golden_frames_round_trip(message: object, frame: str) -> None:
    """Each message serializes to its golden frame and the frame parses back to it."""
    assert serialize(message) == frame  # type: ignore[arg-type]
    assert parse(frame) == message
    assert parse(frame.encode()) == message


def test_error_type_is_kept_as_its_string() -> None:
    """A RoomError's type equals the enum and its wire string; unknown types survive."""
    error = RoomError("r", RoomErrorType.RATE_LIMITED)
    assert error.type == "rate-limited" == RoomErrorType.RATE_LIMITED
    assert parse('{"type":"ROOM-ERROR","payload":{"room":"r","type":"new-kind","msg":""}}') == (
        RoomError("r", "new-kind")
    )


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"ROOM-JOIN"}',
        '{"type":"ROOM-JOIN","payload":[]}',
        '{"type":"ROOM-JOIN","payload":{"room":5}}',
        '{"type":"ROOM-LEAVE","src":5,"payload":{"room":"a"}}',
        '{"type":"ROOM-MEMBERS","payload":{"room":"a","members":[]}}',
        '{"type":"ROOM-MEMBERS","payload":{"room":"a"}}',
        '{"type":"ROOM-ERROR","payload":{"room":"a","type":1}}',
        '{"type":"ROOM-ERROR","payload":{"room":"a","type":"x","msg":2}}',
        '{"type":"OPEN"}',
        "not json",
        b"\xff",
    ],
)
def test_malformed_frames_raise_protocol_error(frame: str | bytes) -> None:
    """A room frame missing a field, with a wrong type, or not a room frame raises ProtocolError."""
    with pytest.raises(ProtocolError):
        parse(frame)


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_garbage_raises_only_protocol_error(frame: bytes | str) -> None:
    """Whatever the bytes, parse returns a room message or raises ProtocolError, nothing else."""
    with contextlib.suppress(ProtocolError):
        parse(frame)


@given(
    st.sampled_from(["ROOM-JOIN", "ROOM-LEAVE", "ROOM-MEMBERS", "ROOM-ERROR"]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    ),
)
def test_room_envelopes_with_any_payload_raise_only_protocol_error(
    kind: str, payload: object
) -> None:
    """A room type with any JSON payload parses or raises ProtocolError, never a KeyError."""
    from peerpy_protocol.messages import _dumps

    with contextlib.suppress(ProtocolError):
        parse(_dumps({"type": kind, "payload": payload}))


@pytest.mark.parametrize("name", ["lobby", "a", "room 1", "team_a-b", "x" * MAX_NAME_LENGTH])
def test_valid_room_names(name: str) -> None:
    """Names that follow the peer id rule, up to the length bound, are valid."""
    assert validate_room_name(name) == name


@pytest.mark.parametrize(
    "name", ["", " a", "a ", "a  b", "a/b", "é", "-a", "x" * (MAX_NAME_LENGTH + 1), 5, None]
)
def test_invalid_room_names(name: object) -> None:
    """A name breaking the id rule, too long, or not a string raises InvalidRoomError."""
    with pytest.raises(InvalidRoomError) as caught:
        validate_room_name(name)  # type: ignore[arg-type]
    assert isinstance(caught.value, UsageError)
    assert caught.value.type == "invalid-room"


def test_metadata_size_is_its_compact_utf8_json() -> None:
    """The size counted is that of the compact JSON in UTF-8, the form sent on the wire."""
    assert metadata_size(None) == 4
    assert metadata_size({"a": [1, 2]}) == len('{"a":[1,2]}')
    assert metadata_size("é") == 4  # quotes and two UTF-8 bytes


def test_metadata_bound() -> None:
    """Metadata up to the bound passes; one byte over, or not JSON, raises InvalidMetadataError."""
    at_bound = "x" * (100 - 2)
    assert validate_metadata(at_bound, 100) == at_bound
    with pytest.raises(InvalidMetadataError, match="101 bytes"):
        validate_metadata(at_bound + "x", 100)
    assert validate_metadata("x" * 10_000, None) == "x" * 10_000
    assert validate_metadata("x" * 10_000, 0) == "x" * 10_000
    for bad in ({1, 2}, object(), b"bytes", "\ud800"):
        with pytest.raises(InvalidMetadataError) as caught:
            validate_metadata(bad)
        assert caught.value.type == "invalid-metadata"


def test_metadata_nested_too_deep_is_invalid() -> None:
    """Metadata nested deeper than the encoder goes is refused, not a RecursionError."""
    deep: object = None
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidMetadataError):
        validate_metadata(deep, None)


def test_capability() -> None:
    """ext=rooms asks for rooms; the OPEN with ext lists them, a plain OPEN does not."""
    assert wants_rooms("rooms")
    assert wants_rooms("other,rooms")
    assert not wants_rooms(None)
    assert not wants_rooms("")
    assert not wants_rooms("roomsx")
    assert offers_rooms(OPEN_WITH_ROOMS)
    assert not offers_rooms('{"type":"OPEN"}')
    assert not offers_rooms('{"type":"OPEN","payload":{"ext":"rooms"}}')
    with pytest.raises(ProtocolError):
        offers_rooms('{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}')


def test_rooms_module_imports_no_io_library() -> None:
    """The rooms protocol module is sans-I/O: importing it pulls in no I/O library."""
    assert imported_after("import peerpy_protocol.rooms").isdisjoint(IMPURE)
