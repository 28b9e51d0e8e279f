"""Rooms across a cluster: SDK members on two of our brokers sharing one real redis-server.

Members on broker 1 and broker 2 see each other and mesh (the signaling
crosses the brokers through Redis); a member whose broker goes away comes back
through the other one (``auto_reconnect``) and joins its rooms again by itself.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest
from peerpy_server import Broker, BrokerConfig

from peerpy.config import Timeouts
from peerpy.peer import Peer
from peerpy.room import Room

from ...helpers.redis import RedisServer, running_redis

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@contextlib.asynccontextmanager
async def broker(redis: RedisServer, prefix: str) -> AsyncIterator[Broker]:
    config = BrokerConfig(
        host="127.0.0.1", port=0, path="/", redis_url=redis.url, redis_prefix=prefix
    )
    async with Broker(config) as running:
        yield running


async def until(predicate: Callable[[], bool], limit: float = 20) -> None:
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - state changed by other tasks
            await anyio.sleep(0.01)


async def meshed(*rooms: Room) -> None:
    await until(lambda: all(r.members and set(r.connections) == set(r.members) for r in rooms))


async def test_members_on_two_brokers_share_a_room(redis: RedisServer, peer_id: str) -> None:
    """Alice on broker 1, Bob and Carol on broker 2: one room, a full mesh, broadcasts."""
    prefix = f"rooms-sdk-{time.monotonic_ns()}:"
    a, b, c = peer_id + "a", peer_id + "b", peer_id + "c"
    async with (
        broker(redis, prefix) as one,
        broker(redis, prefix) as two,
        Peer(a, server=one.url) as alice,
        Peer(b, server=two.url) as bob,
        Peer(c, server=two.url) as carol,
        alice.join("span", metadata="on one") as ra,
        bob.join("span", metadata="on two") as rb,
        carol.join("span") as rc,
    ):
        assert rb.members[a] == "on one"  # broker 2's snapshot lists broker 1's member
        await until(lambda: set(ra.members) == {b, c})
        await meshed(ra, rb, rc)
        await ra.send("from broker 1")
        await rb.send("from broker 2")
        assert {await rc.recv(), await rc.recv()} == {(a, "from broker 1"), (b, "from broker 2")}
        assert await ra.recv() == (b, "from broker 2")
        await rc.leave()
        await until(lambda: c not in ra.members)


async def test_a_member_whose_broker_goes_joins_again_through_the_other(
    redis: RedisServer, peer_id: str
) -> None:
    """Broker 1 stops: its member registers on broker 2 (auto_reconnect) and joins its room
    again by itself; the others see it leave, then come back, and talk with it again."""
    prefix = f"rooms-sdk-{time.monotonic_ns()}:"
    a, b = peer_id + "a", peer_id + "b"
    quick = Timeouts(reconnect_initial=0.05, reconnect_max=0.2)
    async with contextlib.AsyncExitStack() as outer:
        two = await outer.enter_async_context(broker(redis, prefix))
        first = contextlib.AsyncExitStack()
        one = await first.enter_async_context(broker(redis, prefix))
        async with (
            first,
            Peer(a, server=[one.url, two.url], auto_reconnect=True, timeouts=quick) as alice,
            Peer(b, server=two.url) as bob,
            alice.join("span", metadata={"v": 1}) as ra,
            bob.join("span") as rb,
        ):
            events: list[tuple[str, str]] = []
            rb.on("join", lambda member, meta: events.append(("join", member)))
            rb.on("leave", lambda member: events.append(("leave", member)))
            await meshed(ra, rb)
            await first.aclose()  # broker 1 goes away
            await until(lambda: events[-2:] == [("leave", a), ("join", a)], limit=30)
            assert alice.server.port == two.port
            assert dict(rb.members) == {a: {"v": 1}}
            await meshed(ra, rb)
            await rb.send("welcome back")
            with anyio.fail_after(10):
                while (got := await ra.recv()) != (b, "welcome back"):
                    pass
            assert got == (b, "welcome back")
