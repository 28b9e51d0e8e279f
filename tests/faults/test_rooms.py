"""Rooms across broker processes on a real redis-server: a SIGKILLed broker's members leave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from peerpy_protocol.rooms import OPEN_WITH_ROOMS
from websockets.asyncio.client import ClientConnection, connect

from ..helpers.processes import BrokerProcess, wait_listening
from ..helpers.redis import RedisServer, running_redis

pytestmark = pytest.mark.anyio

#: The brokers' alive_timeout (ms): a dead broker's members leave within it.
ALIVE_MS = 2000


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@contextlib.asynccontextmanager
async def member(broker: BrokerProcess, peer_id: str) -> AsyncIterator[ClientConnection]:
    url = f"ws://127.0.0.1:{broker.port}/peerjs?key=peerjs&id={peer_id}&token=t&ext=rooms"
    async with connect(url, open_timeout=5, ping_interval=None) as ws:
        assert await ws.recv() == OPEN_WITH_ROOMS

        async def heartbeat() -> None:
            # A live member keeps its registration (alive_timeout is short here).
            while True:
                await asyncio.sleep(ALIVE_MS / 4000)
                await ws.send('{"type":"HEARTBEAT"}')

        task = asyncio.create_task(heartbeat())
        try:
            yield ws
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return result


async def test_sigkill_of_a_broker_removes_its_members_for_everyone(redis: RedisServer) -> None:
    """alice on broker 1, bob on broker 2 in one room; SIGKILL broker 1: bob sees alice leave
    within alive_timeout (plus a tick), and a newcomer's snapshot no longer lists her."""
    brokers = [BrokerProcess("--redis", redis.url, "--alive_timeout", str(ALIVE_MS)) for _ in "ab"]
    try:
        for broker in brokers:
            broker._launch()
        for broker in brokers:
            await wait_listening(broker.port)
        async with member(brokers[0], "alice") as alice, member(brokers[1], "bob") as bob:
            join = {"type": "ROOM-JOIN", "payload": {"room": "lobby", "metadata": "A"}}
            await alice.send(json.dumps(join))
            assert (await recv(alice))["type"] == "ROOM-MEMBERS"
            await bob.send(json.dumps({**join, "payload": {"room": "lobby", "metadata": "B"}}))
            assert (await recv(bob))["payload"]["members"] == {"alice": "A"}
            assert (await recv(alice))["src"] == "bob"
            brokers[0].kill()
            killed = time.monotonic()
            leave = await recv(bob, timeout=ALIVE_MS / 1000 + 5)
            gone = time.monotonic() - killed
            assert leave == {"type": "ROOM-LEAVE", "src": "alice", "payload": {"room": "lobby"}}
            assert gone <= ALIVE_MS / 1000 + 1.0, f"seen leaving {gone:.1f} s after the kill"
            async with member(brokers[1], "carol") as carol:
                await carol.send(json.dumps({**join, "payload": {"room": "lobby"}}))
                assert (await recv(carol))["payload"]["members"] == {"bob": "B"}
    finally:
        for broker in brokers:
            broker.stop()
