"""A cluster of broker processes on a real ``redis-server``: peers on different
brokers connect, and a SIGKILLed broker's peers move to another one.

The brokers are ``peerpy-server --redis`` subprocesses (stopped by PID); the
peers are real aiortc peers with ``server=[...]`` and ``auto_reconnect``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from websockets.asyncio.client import connect

from peerpy.config import resolve_servers
from peerpy.peer import Peer

from ..helpers.processes import BrokerProcess, wait_listening
from ..helpers.redis import RedisServer, running_redis
from .test_broker_loss import REJOIN_WITHIN, Watch, data_pair, exchange

pytestmark = pytest.mark.anyio


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def brokers(redis: RedisServer) -> AsyncIterator[list[BrokerProcess]]:
    """Three broker processes sharing one realm (alive_timeout 3 s)."""
    started = [BrokerProcess("--redis", redis.url, "--alive_timeout", "3000") for _ in range(3)]
    try:
        for broker in started:
            broker._launch()
        for broker in started:
            await wait_listening(broker.port)
        yield started
    finally:
        for broker in started:
            broker.stop()


def test_server_lists_from_keyword_and_environment() -> None:
    urls = ["http://127.0.0.1:9001/", "http://127.0.0.1:9002/app"]
    assert [s.port for s in resolve_servers(urls)] == [9001, 9002]
    env = {"PEERPY_SERVER": " http://127.0.0.1:9001/, http://127.0.0.1:9002/app ,"}
    servers = resolve_servers(None, environ=env)
    assert [(s.port, s.path) for s in servers] == [(9001, "/"), (9002, "/app/")]
    assert [s.port for s in resolve_servers(None, environ={})] == [9000]


async def test_sigkill_of_a_broker_moves_its_peers_and_keeps_connections(
    brokers: list[BrokerProcess], peer_id: str
) -> None:
    """alice on broker 1, bob on broker 2: a DataConnection across brokers; SIGKILL
    broker 1: the connection stays up and alice is registered on broker 2 (same
    id, same token) within 5 s, where a peer on broker 3 reaches her."""
    urls = [broker.url for broker in brokers]
    async with (
        Peer(peer_id + "a", server=urls, auto_reconnect=True) as alice,
        Peer(peer_id + "b", server=urls[1:], auto_reconnect=True) as bob,
    ):
        assert alice.server.port == brokers[0].port
        conn, incoming = await data_pair(alice, bob)
        await exchange(conn, incoming, "across two brokers")
        watch = Watch(alice)
        brokers[0].kill()
        killed = time.monotonic()
        with anyio.fail_after(REJOIN_WITHIN + 5):
            await watch.back.wait()
        rejoined = time.monotonic() - killed
        assert rejoined < REJOIN_WITHIN, f"registered again {rejoined:.1f} s after the kill"
        assert alice.server.port == brokers[1].port
        assert conn.open
        await exchange(conn, incoming, {"after": "the kill"})
        async with Peer(peer_id + "c", server=urls[2]) as carol:
            again, again_incoming = await data_pair(carol, alice)
            await exchange(again, again_incoming, "from broker 3 to the moved peer")


async def test_dead_brokers_ids_are_released_within_alive_timeout(
    brokers: list[BrokerProcess],
) -> None:
    """Another token cannot take a SIGKILLed broker's id at once, but can within
    alive_timeout (3 s here) plus the refresh period."""
    query = "key=peerjs&id=orphan&version=1.5.5"
    first = brokers[0].url.replace("http", "ws") + f"peerjs?{query}&token=one"
    other = brokers[1].url.replace("http", "ws") + f"peerjs?{query}&token=two"
    async with connect(first) as ws:
        assert json.loads(await ws.recv()) == {"type": "OPEN"}
        brokers[0].kill()
        killed = time.monotonic()
    async with connect(other) as thief:
        assert json.loads(await thief.recv())["type"] == "ID-TAKEN"
    with anyio.fail_after(10):
        while True:
            async with connect(other) as ws:
                message = json.loads(await ws.recv())
            if message == {"type": "OPEN"}:
                break
            assert message["type"] == "ID-TAKEN"
            await anyio.sleep(0.2)
    released = time.monotonic() - killed
    # Redis expires the key 3 s after the last refresh at most; 1 s for our polling.
    assert released <= 3.0 + 1.0, f"released {released:.1f} s after the kill"
