"""Rooms over real sockets: our broker (built-in server and ASGI app, alone and on Redis).

Raw signaling clients speak the room messages of docs/rooms.md ("Wire messages").
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import jwt
import pytest
from peerpy_protocol.rooms import OPEN_WITH_ROOMS

from ...helpers.http import http_request
from ...helpers.redis import RedisServer, running_redis
from ...helpers.signaling import Client, client
from ...helpers.targets import Target, run_asgi, run_cluster, run_ours

pytestmark = pytest.mark.anyio

SECRET = "rooms-test-secret-of-32-bytes-ok!"
Start = Callable[..., contextlib.AbstractAsyncContextManager[Target]]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """One real redis-server for this module's clusters (each on its own key prefix)."""
    with running_redis() as server:
        yield server


@pytest.fixture(params=["peerpy", "asgi", "cluster"])
def start(request: pytest.FixtureRequest) -> Start:
    """Our broker alone, mounted as an ASGI app, and three of ours on Redis."""
    if request.param == "cluster":
        return functools.partial(run_cluster, request.getfixturevalue("redis").url)
    return run_asgi if request.param == "asgi" else run_ours


@contextlib.asynccontextmanager
async def member(target: Target, peer_id: str, token: str = "tok") -> AsyncIterator[Client]:
    """A client registered as ``peer_id`` with ext=rooms; its OPEN (with ext) consumed."""
    async with client(target.ws_url(id=peer_id, token=token) + "&ext=rooms") as c:
        assert await c.recv_raw() == OPEN_WITH_ROOMS
        yield c


async def join(c: Client, room: str, metadata: Any = None) -> dict[str, Any]:
    """Join ``room``; the broker's answer (ROOM-MEMBERS or ROOM-ERROR)."""
    await c.send({"type": "ROOM-JOIN", "payload": {"room": room, "metadata": metadata}})
    return await c.recv()


async def test_join_snapshot_notices_and_leave(start: Start) -> None:
    """Members (on different brokers in the cluster) see each other join, update and leave."""
    async with start() as target, member(target, "alice") as alice, member(target, "bob") as bob:
        assert await join(alice, "lobby", {"n": "A"}) == {
            "type": "ROOM-MEMBERS", "payload": {"room": "lobby", "members": {}},
        }  # fmt: skip
        assert await join(bob, "lobby", {"n": "B"}) == {
            "type": "ROOM-MEMBERS", "payload": {"room": "lobby", "members": {"alice": {"n": "A"}}},
        }  # fmt: skip
        assert await alice.recv() == {
            "type": "ROOM-JOIN", "src": "bob", "payload": {"room": "lobby", "metadata": {"n": "B"}},
        }  # fmt: skip
        async with member(target, "carol") as carol:
            members = await join(carol, "lobby")
            assert members["payload"]["members"] == {"alice": {"n": "A"}, "bob": {"n": "B"}}
            for other in (alice, bob):
                assert (await other.recv())["src"] == "carol"
            await bob.send({"type": "ROOM-LEAVE", "payload": {"room": "lobby"}})
            leave = {"type": "ROOM-LEAVE", "src": "bob", "payload": {"room": "lobby"}}
            assert await alice.recv() == leave
            assert await carol.recv() == leave
        # carol's socket closed: she leaves too.
        assert await alice.recv() == {
            "type": "ROOM-LEAVE", "src": "carol", "payload": {"room": "lobby"},
        }  # fmt: skip
        assert await bob.silent(0.3)


async def test_open_is_peers_without_ext(start: Start) -> None:
    """A PeerJS client (no ext=rooms) gets peer's OPEN byte for byte, and no room notice."""
    async with start() as target, client(target.ws_url(id="pj", token="t")) as peerjs:
        assert await peerjs.recv_raw() == '{"type":"OPEN"}'
        async with member(target, "alice") as alice:
            await join(alice, "lobby")
        assert await peerjs.silent(0.3)


async def test_full_room_and_caps_hold_across_brokers(start: Start) -> None:
    """room-full past room_max_members, room-limit past max_rooms (cluster-wide on Redis)."""
    async with (
        start(room_max_members=2, max_rooms=1) as target,
        member(target, "a") as a, member(target, "b") as b, member(target, "c") as c,
    ):  # fmt: skip
        await join(a, "r")
        await join(b, "r")
        refused = await join(c, "r")
        assert refused["type"] == "ROOM-ERROR"
        assert refused["payload"]["room"] == "r"
        assert refused["payload"]["type"] == "room-full"
        assert (await join(c, "other"))["payload"]["type"] == "room-limit"
        assert await a.recv() == {"type": "ROOM-JOIN", "src": "b", "payload": {"room": "r", "metadata": None}}  # fmt: skip # noqa: E501
        assert await a.silent(0.3)  # c's refused join notified nobody


async def test_invalid_name_and_metadata_keep_the_client(start: Start) -> None:
    """Bad names and huge metadata are refused with their type; the client stays usable."""
    async with start() as target, member(target, "alice") as alice:
        assert (await join(alice, "a/b"))["payload"]["type"] == "invalid-room"
        assert (await join(alice, "x" * 300))["payload"]["type"] == "invalid-room"
        huge = {"blob": "x" * 200_000}
        assert (await join(alice, "lobby", huge))["payload"]["type"] == "invalid-metadata"
        assert (await join(alice, "lobby", "x" * 4000))["type"] == "ROOM-MEMBERS"


async def test_jwt_rooms_claim() -> None:
    """A token's rooms claim (names and patterns) limits the rooms; none: every room."""
    async with run_ours(jwt_secret=SECRET) as target:
        limited = jwt.encode({"sub": "*", "rooms": ["lobby", "team-*"]}, SECRET, algorithm="HS256")
        free = jwt.encode({"sub": "*"}, SECRET, algorithm="HS256")
        async with member(target, "alice", limited) as alice, member(target, "bob", free) as bob:
            assert (await join(alice, "lobby"))["type"] == "ROOM-MEMBERS"
            assert (await join(alice, "team-red"))["type"] == "ROOM-MEMBERS"
            assert (await join(alice, "admin"))["payload"]["type"] == "room-forbidden"
            assert (await join(bob, "admin"))["type"] == "ROOM-MEMBERS"
        assert target.broker is not None
        assert target.broker.stats.room_refused == {"room-forbidden": 1}


async def test_discovery_endpoint(start: Start) -> None:
    """GET <path><key>/rooms/<name>: the member ids with discovery, 401 without."""
    async with (
        start(allow_discovery=True) as target,
        member(target, "alice") as alice,
        member(target, "bob") as bob,
    ):
        await join(alice, "the room")
        await join(bob, "the room")
        status, _, body = await http_request(target.port, "GET", "/myapp/peerjs/rooms/the%20room")
        assert status == 200
        assert sorted(json.loads(body)) == ["alice", "bob"]
        status, _, body = await http_request(target.port, "GET", "/myapp/peerjs/rooms/empty")
        assert (status, json.loads(body)) == (200, [])
    async with start() as target:
        status, _, _ = await http_request(target.port, "GET", "/myapp/peerjs/rooms/lobby")
        assert status == 401


async def test_abuse_is_bounded_rate_limited_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Thousands of joins and a join/leave loop: bounded, rate-limited, one log line, metrics
    count it, and another client joins at once."""
    caplog.set_level(logging.WARNING, logger="peerpy_server.rooms")
    async with run_ours(room_burst=20, room_rate=5.0) as target:
        assert target.broker is not None
        async with member(target, "mallory") as mallory, member(target, "alice") as alice:
            for index in range(2000):
                await mallory.send({"type": "ROOM-JOIN", "payload": {"room": f"r{index}"}})
                await mallory.send({"type": "ROOM-LEAVE", "payload": {"room": f"r{index}"}})
            types = [(await mallory.recv())["type"] for _ in range(2000)]
            assert types.count("ROOM-MEMBERS") <= 20
            assert types.count("ROOM-ERROR") >= 1980
            assert (await join(alice, "lobby"))["type"] == "ROOM-MEMBERS"
            assert target.broker.rooms.room_count == 1
            refusals = target.broker.stats.room_refused
            assert refusals["rate-limited"] >= 1980
            status, _, body = await http_request(target.port, "GET", "/myapp/metrics")
            assert status == 200
            text = body.decode()
            assert "peerpy_broker_rooms 1.0" in text
            assert "peerpy_broker_room_members 1.0" in text
            assert 'peerpy_broker_room_refusals_total{reason="rate-limited"}' in text
    logged = [r for r in caplog.records if "rate-limited" in r.getMessage()]
    assert len(logged) == 1


async def test_per_client_bound() -> None:
    """rooms_per_client caps one client's rooms; another client is unaffected."""
    async with (
        run_ours(rooms_per_client=3) as target,
        member(target, "a") as a,
        member(target, "b") as b,
    ):
        answers = [(await join(a, f"r{index}"))["type"] for index in range(5)]
        assert answers == ["ROOM-MEMBERS"] * 3 + ["ROOM-ERROR"] * 2
        assert (await join(b, "r4"))["type"] == "ROOM-MEMBERS"
