"""Placement of rooms on Janus instances: rendezvous hashing, room numbers, credentials."""

from __future__ import annotations

import collections
import random

import pytest
from peerpy_server.sfu.placement import (
    MAX_ROOM,
    Instance,
    choose,
    credentials,
    mint_token,
    parse_instance,
    participant_id,
    ranking,
    room_number,
)

INSTANCES = [Instance(f"ws://10.0.0.{n}:8188", f"wss://sfu{n}.example") for n in range(1, 5)]
ROOMS = [f"room-{n}" for n in range(2000)]


def test_every_broker_agrees_whatever_the_order_of_its_list() -> None:
    """The ranking depends on the room and the instances, not on the order they were given."""
    shuffled = INSTANCES[:]
    random.Random(7).shuffle(shuffled)
    for room in ROOMS[:200]:
        assert ranking(room, INSTANCES) == ranking(room, shuffled)


def test_rooms_spread_evenly() -> None:
    """Four instances each get about a quarter of 2000 rooms."""
    live = {i.url for i in INSTANCES}
    counts = collections.Counter(choose(room, INSTANCES, live) for room in ROOMS)
    assert all(400 <= counts[instance] <= 600 for instance in INSTANCES), counts


def test_a_dead_instance_moves_only_its_rooms_to_their_second_best() -> None:
    """Removing one instance moves exactly the rooms it held; they come back when it returns."""
    live = {i.url for i in INSTANCES}
    before = {room: choose(room, INSTANCES, live) for room in ROOMS}
    dead = INSTANCES[1]
    after = {room: choose(room, INSTANCES, live - {dead.url}) for room in ROOMS}
    for room in ROOMS:
        if before[room] == dead:
            assert after[room] == ranking(room, INSTANCES)[1]
        else:
            assert after[room] == before[room]
    assert before == {room: choose(room, INSTANCES, live) for room in ROOMS}
    assert choose("lobby", INSTANCES, set()) is None


def test_room_numbers_are_safe_integers_and_stable() -> None:
    """Room numbers are 1 .. 2**53-1 (JavaScript-safe), the same for the same name."""
    numbers = {room_number(room) for room in ROOMS}
    assert len(numbers) == len(ROOMS)
    assert all(1 <= n <= MAX_ROOM for n in numbers)
    assert room_number("lobby") == room_number("lobby")


def test_credentials_depend_on_the_key_the_instance_and_the_room() -> None:
    """Brokers sharing the key agree; another key, room or instance gives other secrets."""
    secret, pin = credentials(b"k", INSTANCES[0], "lobby")
    assert (secret, pin) == credentials(b"k", INSTANCES[0], "lobby")
    assert secret != pin
    others = [
        credentials(b"other", INSTANCES[0], "lobby"),
        credentials(b"k", INSTANCES[1], "lobby"),
        credentials(b"k", INSTANCES[0], "lobby2"),
    ]
    assert all(secret != s and pin != p for s, p in others)
    assert mint_token() != mint_token()


def test_parse_instance() -> None:
    """``URL`` or ``URL,PUBLIC_URL``; anything but ws(s):// is refused."""
    assert parse_instance("ws://127.0.0.1:8188") == Instance(
        "ws://127.0.0.1:8188", "ws://127.0.0.1:8188"
    )
    assert parse_instance("ws://10.0.0.1:8188,wss://sfu.example/janus") == Instance(
        "ws://10.0.0.1:8188", "wss://sfu.example/janus"
    )
    for bad in ("http://x", "ws://x,https://y", ""):
        with pytest.raises(ValueError, match="ws://"):
            parse_instance(bad)


def test_participant_ids_are_per_member_and_unguessable_without_the_key() -> None:
    """A member's participant id depends on the key, the instance, the room and the member: the
    same on every broker sharing the key, different for another member, room or key, and
    within 1..2**53 - 1."""
    first = INSTANCES[0]
    alice = participant_id(b"k", first, "lobby", "alice")
    assert alice == participant_id(b"k", first, "lobby", "alice")
    others = {
        participant_id(b"k", first, "lobby", "bob"),
        participant_id(b"k", first, "hall", "alice"),
        participant_id(b"k", INSTANCES[1], "lobby", "alice"),
        participant_id(b"other key", first, "lobby", "alice"),
    }
    assert alice not in others
    assert all(0 < i <= MAX_ROOM for i in {alice, *others})
