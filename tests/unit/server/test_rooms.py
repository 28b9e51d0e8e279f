"""Rooms in the broker's core (core.rooms): membership, checks, notices, with fake sessions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from peerpy_protocol.rooms import OPEN_WITH_ROOMS, RoomErrorType
from peerpy_server.core.rooms import LocalDirectory, Rooms

from .fakes import FakeHost, FakeSession


def rooms_host(allowed: Callable[[str, str], bool] | None = None, **options: Any) -> FakeHost:
    """A fake host whose realm has rooms kept in memory."""
    host = FakeHost(**options)
    config = host.config
    host.realm.rooms = Rooms(
        config,
        LocalDirectory(config.room_max_members, config.max_rooms),
        host.realm.deliver_local,
        stats=host.stats,
        warnings=host.warnings,
        allowed=allowed,
    )
    return host


def connect(host: FakeHost, peer_id: str, token: str = "t") -> FakeSession:
    session = FakeSession(host)
    session.register(f"key=peerjs&id={peer_id}&token={token}&ext=rooms")
    session.frames.clear()  # OPEN
    return session


def join(session: FakeSession, room: str, metadata: Any = None) -> None:
    session.message(
        json.dumps({"type": "ROOM-JOIN", "payload": {"room": room, "metadata": metadata}})
    )


def leave(session: FakeSession, room: str) -> None:
    session.message(json.dumps({"type": "ROOM-LEAVE", "payload": {"room": room}}))


def errors(session: FakeSession) -> list[str]:
    return [f["payload"]["type"] for f in session.frames if f["type"] == "ROOM-ERROR"]


def test_open_lists_rooms_only_when_asked() -> None:
    """ext=rooms gets the OPEN with the ext list; without it OPEN is peer's."""
    host = rooms_host()
    opened = {}
    for index, query in enumerate(("ext=rooms", "ext=a,rooms", "ext=other", "")):
        session = FakeSession(host)
        session.register(f"key=peerjs&id=p{index}&token=t&{query}")
        opened[query] = session.frames
    assert opened == {
        "ext=rooms": [json.loads(OPEN_WITH_ROOMS)],
        "ext=a,rooms": [json.loads(OPEN_WITH_ROOMS)],
        "ext=other": [{"type": "OPEN"}],
        "": [{"type": "OPEN"}],
    }


def test_join_snapshot_and_notices() -> None:
    """The joiner gets the other members; the others get ROOM-JOIN with src and metadata."""
    host = rooms_host()
    alice, bob = connect(host, "alice"), connect(host, "bob")
    join(alice, "lobby", {"name": "Alice"})
    assert alice.frames == [{"type": "ROOM-MEMBERS", "payload": {"room": "lobby", "members": {}}}]
    join(bob, "lobby", [1])
    assert bob.frames[-1] == {
        "type": "ROOM-MEMBERS",
        "payload": {"room": "lobby", "members": {"alice": {"name": "Alice"}}},
    }
    assert alice.frames[-1] == {
        "type": "ROOM-JOIN", "src": "bob", "payload": {"room": "lobby", "metadata": [1]},
    }  # fmt: skip


def test_rejoin_updates_metadata() -> None:
    """Joining again updates the metadata; the others get ROOM-JOIN again."""
    host = rooms_host()
    alice, bob = connect(host, "alice"), connect(host, "bob")
    join(alice, "lobby", 1)
    join(bob, "lobby")
    join(alice, "lobby", 2)
    assert bob.frames[-1]["payload"] == {"room": "lobby", "metadata": 2}
    directory = host.realm.rooms.directory  # type: ignore[union-attr]
    assert directory.rooms == {"lobby": {"alice": 2, "bob": None}}  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["leave", "disconnect", "LEAVE", "timeout", "moved"])
def test_a_client_gone_for_any_reason_leaves_its_rooms(how: str) -> None:
    """ROOM-LEAVE, socket closed, PeerJS LEAVE, alive timeout, id moved: the others see it leave."""
    host = rooms_host(alive_timeout=10.0)
    alice, bob = connect(host, "alice"), connect(host, "bob")
    join(alice, "lobby")
    join(alice, "games")
    join(bob, "lobby")
    if how == "leave":
        leave(alice, "lobby")
        leave(alice, "games")
    elif how == "disconnect":
        alice.gone()
    elif how == "LEAVE":
        alice.message('{"type":"LEAVE"}')
    elif how == "timeout":
        host.clock = 9.0
        bob.message('{"type":"HEARTBEAT"}')
        host.realm.sweep(11.0)
    else:
        host.realm.supersede("alice", None)
    assert bob.frames[-1] == {"type": "ROOM-LEAVE", "src": "alice", "payload": {"room": "lobby"}}
    assert host.realm.rooms.directory.rooms == {"lobby": {"bob": None}}  # type: ignore[union-attr]
    assert host.realm.rooms.rooms_of("alice") == []  # type: ignore[union-attr]


def test_leaving_a_room_one_is_not_in_is_a_no_op() -> None:
    """ROOM-LEAVE for a room the client is not in sends nothing to anyone."""
    host = rooms_host()
    alice, bob = connect(host, "alice"), connect(host, "bob")
    join(bob, "lobby")
    bob.frames.clear()
    leave(alice, "lobby")
    leave(alice, "nowhere")
    assert alice.frames == bob.frames == []


def test_full_room() -> None:
    """Past room_max_members a join gets room-full; a member's re-join still works."""
    host = rooms_host(room_max_members=2)
    a, b, c = (connect(host, name) for name in "abc")
    join(a, "r")
    join(b, "r")
    join(c, "r")
    assert errors(c) == ["room-full"]
    join(a, "r", "again")
    assert errors(a) == []
    assert host.stats.room_refused == {"room-full": 1}


@pytest.mark.parametrize(
    ("room", "metadata", "reason"),
    [("bad/name", None, "invalid-room"), ("x" * 257, None, "invalid-room"),
     ("ok", "x" * 100, "invalid-metadata")],
)  # fmt: skip
def test_invalid_name_or_metadata(room: str, metadata: Any, reason: str) -> None:
    """A name breaking the id rule or too long, metadata over the bound: refused with its type."""
    host = rooms_host(room_metadata_bytes=64)
    alice = connect(host, "alice")
    join(alice, room, metadata)
    assert errors(alice) == [reason]
    assert host.realm.rooms.directory.rooms == {}  # type: ignore[union-attr]


def test_per_client_and_total_bounds() -> None:
    """rooms_per_client and max_rooms refuse with room-limit; leaving frees a slot."""
    host = rooms_host(rooms_per_client=2, max_rooms=3, room_rate=None)
    alice, bob = connect(host, "alice"), connect(host, "bob")
    for room in ("r1", "r2", "r3"):
        join(alice, room)
    assert errors(alice) == ["room-limit"]
    join(bob, "r3")
    join(bob, "r4")
    assert errors(bob) == ["room-limit"]  # three rooms exist
    join(bob, "r1")  # an existing room: no new room needed
    assert errors(bob) == ["room-limit"]
    leave(alice, "r2")
    join(alice, "r5")
    assert errors(alice) == ["room-limit"]
    assert sorted(host.realm.rooms.directory.rooms) == ["r1", "r3", "r5"]  # type: ignore[union-attr]


def test_bounds_off() -> None:
    """None turns each bound off."""
    host = rooms_host(rooms_per_client=None, max_rooms=None, room_max_members=None, room_rate=None)
    alice = connect(host, "alice")
    for index in range(100):
        join(alice, f"r{index}")
    assert errors(alice) == []


def test_rate_limit_refuses_joins_and_recovers() -> None:
    """Past room_burst joins are refused rate-limited, logged once; tokens come back with time."""
    host = rooms_host(room_rate=2.0, room_burst=4, rooms_per_client=None)
    alice = connect(host, "alice")
    for index in range(10):
        join(alice, f"r{index}")
    assert errors(alice) == ["rate-limited"] * 6
    assert host.stats.room_refused == {"rate-limited": 6}
    host.clock = 1.0  # two tokens back
    alice.frames.clear()
    join(alice, "later")
    join(alice, "later2")
    join(alice, "later3")
    assert errors(alice) == ["rate-limited"]


def test_join_leave_loop_is_bounded_and_leaves_nothing_behind() -> None:
    """A client looping join/leave is rate-limited; another client is unaffected; no state left."""
    host = rooms_host(room_rate=1.0, room_burst=10)
    alice, bob = connect(host, "alice"), connect(host, "bob")
    for _ in range(1000):
        join(alice, "lobby")
        leave(alice, "lobby")
    join(bob, "other")
    assert errors(bob) == []
    assert host.realm.rooms.directory.rooms == {"other": {"bob": None}}  # type: ignore[union-attr]
    alice.gone()
    assert host.realm.rooms._buckets.keys() == {"bob"}  # type: ignore[union-attr]


def test_jwt_rooms_claim_check() -> None:
    """allowed(token, room) False: room-forbidden."""
    host = rooms_host(allowed=lambda token, room: token == "vip" or room == "public")
    guest, vip = connect(host, "guest", "g"), connect(host, "vip", "vip")
    join(guest, "secret")
    join(guest, "public")
    join(vip, "secret")
    assert errors(guest) == ["room-forbidden"]
    assert errors(vip) == []


def test_malformed_room_frames_are_ignored() -> None:
    """A room frame without a room is logged and ignored; the client stays connected."""
    host = rooms_host()
    alice = connect(host, "alice")
    alice.message('{"type":"ROOM-JOIN","payload":{"metadata":1}}')
    alice.message('{"type":"ROOM-MEMBERS","payload":{"room":"x","members":{}}}')
    assert alice.frames == []
    assert alice.closed is None


def test_gauges_count_memberships() -> None:
    """room_count and memberships count the local clients' rooms."""
    host = rooms_host()
    alice, bob = connect(host, "alice"), connect(host, "bob")
    join(alice, "a")
    join(alice, "b")
    join(bob, "a")
    rooms = host.realm.rooms
    assert isinstance(rooms, Rooms)
    assert (rooms.room_count, rooms.memberships) == (2, 3)
    answers: list[list[str]] = []
    rooms.members("a", answers.append)
    rooms.members("none", answers.append)
    assert answers == [["alice", "bob"], []]


def test_refusal_types_are_the_documented_ones() -> None:
    """Every refusal reason is a RoomErrorType value."""
    assert {t.value for t in RoomErrorType} == {
        "room-full", "invalid-room", "invalid-metadata", "room-forbidden", "room-limit",
        "rate-limited",
    }  # fmt: skip
