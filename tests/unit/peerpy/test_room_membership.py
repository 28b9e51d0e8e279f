"""Room membership (peerpy.rooms.membership): the broker's word turned into join/leave events."""

from __future__ import annotations

from peerpy.rooms.membership import Joined, Left, Membership, offers


def test_the_first_snapshot_announces_every_member_but_us() -> None:
    """ROOM-MEMBERS gives one new Joined per member; our own id is never a member."""
    room = Membership("me")
    assert room.snapshot({"bob": {"n": 1}, "me": None, "amy": None}) == [
        Joined("bob", {"n": 1}),
        Joined("amy", None),
    ]
    assert dict(room.members) == {"bob": {"n": 1}, "amy": None}
    assert room.joined("me", None) == []


def test_notices_before_the_snapshot_are_replayed_after_it() -> None:
    """A notice that outran the snapshot is applied once the snapshot is in, in order."""
    room = Membership("me")
    assert room.joined("carl", 1) == []
    assert room.left("bob") == []
    assert not room.snapshot_taken
    assert room.snapshot({"bob": None}) == [Joined("bob", None), Joined("carl", 1), Left("bob")]
    assert list(room) == ["carl"]


def test_join_again_with_new_metadata_and_a_second_word_of_a_departure() -> None:
    """A member joining again with other metadata is a Joined that is not new; with the same
    metadata nothing; a leave already seen (broker after the mesh) is nothing."""
    room = Membership("me")
    room.snapshot({})
    assert room.joined("bob", 1) == [Joined("bob", 1, new=True)]
    assert room.joined("bob", 1) == []
    assert room.joined("bob", 2) == [Joined("bob", 2, new=False)]
    assert room.left("bob") == [Left("bob")]
    assert room.left("bob") == []
    assert "bob" not in room
    assert len(room) == 0


def test_a_later_snapshot_is_a_difference() -> None:
    """Joined again after a lost broker session: who left or came meanwhile, nothing else."""
    room = Membership("me")
    room.snapshot({"amy": 1, "bob": 2})
    assert room.snapshot({"bob": 2, "carl": 3}) == [Left("amy"), Joined("carl", 3)]
    room.clear()
    assert dict(room.members) == {}


def test_the_smaller_id_offers() -> None:
    """Exactly one of two members opens their connection, the lexically smaller id."""
    assert offers("alice", "bob")
    assert not offers("bob", "alice")
    assert offers("Zed", "amy")  # code point order, as JavaScript's < on ASCII ids
