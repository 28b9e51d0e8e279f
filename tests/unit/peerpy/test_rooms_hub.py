"""A peer's rooms (peerpy.rooms.hub, .mesh): local checks and what marks a room connection."""

from __future__ import annotations

import pytest
from peerpy_protocol import rooms as wire

from peerpy.exceptions import (
    InvalidMetadataError,
    InvalidRoomError,
    PeerError,
    RoomError,
    RoomForbiddenError,
    RoomFullError,
    RoomLimitError,
    RoomRateLimitedError,
    UsageError,
)
from peerpy.peer import Peer
from peerpy.rooms.hub import room_error
from peerpy.rooms.mesh import room_metadata, room_of


def test_bad_names_and_metadata_are_refused_before_anything_is_sent() -> None:
    """join() checks the name and metadata itself (UsageErrors), even before the peer starts."""
    peer = Peer("alice")
    with pytest.raises(InvalidRoomError) as bad_name:
        peer.join("no/slash")
    assert bad_name.value.type == "invalid-room"
    assert isinstance(bad_name.value, UsageError)
    with pytest.raises(InvalidRoomError):
        peer.join("x" * (wire.MAX_NAME_LENGTH + 1))
    with pytest.raises(InvalidMetadataError) as too_big:
        peer.join("lobby", metadata="x" * wire.DEFAULT_METADATA_BYTES)
    assert too_big.value.type == "invalid-metadata"
    with pytest.raises(InvalidMetadataError):
        peer.join("lobby", metadata={"not json": object()})


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("room-full", RoomFullError),
        ("invalid-room", InvalidRoomError),
        ("invalid-metadata", InvalidMetadataError),
        ("room-forbidden", RoomForbiddenError),
        ("room-limit", RoomLimitError),
        ("rate-limited", RoomRateLimitedError),
        ("something-new", RoomError),
    ],
)
def test_each_room_error_has_its_exception(kind: str, error: type[PeerError]) -> None:
    """ROOM-ERROR's type picks the exception, whose .type is the same string."""
    raised = room_error(wire.RoomError("lobby", kind, "because"))
    assert type(raised) is error
    assert "lobby" in str(raised)
    assert "because" in str(raised)
    if error is not RoomError:
        assert raised.type == kind


def test_room_connections_are_marked_by_their_metadata() -> None:
    """{"peerpy-room": NAME} marks a room's connection; anything else is an ordinary one."""
    assert room_of(room_metadata("lobby")) == "lobby"
    for other in (None, "lobby", {"room": "lobby"}, {"peerpy-room": 3}, ["peerpy-room"]):
        assert room_of(other) is None
