"""Cluster mode against a real ``redis-server``: what spans instances, and losing Redis.

The whole conformance suite also runs on a 3-broker cluster (the ``cluster``
parameter of ``start_broker``); these tests cover what it cannot show:
several senders on several instances, a cluster-wide ``/peers``, and a Redis
restart under live clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio
from peerpy_server import Broker
from peerpy_server.cli import build_parser, config_from_args
from peerpy_server.cluster import SOCKET_TIMEOUT, Cluster
from peerpy_server.cluster.writer import STORE_UNREACHABLE
from websockets.exceptions import ConnectionClosed

from ...helpers.brokers import free_port
from ...helpers.http import http_request
from ...helpers.redis import RedisServer, running_redis
from ...helpers.signaling import Client, client, peer_client
from ...helpers.targets import Target, run_cluster, run_ours

pytestmark = pytest.mark.anyio

OFFER = {"type": "OFFER", "payload": {"sdp": "x"}}
#: The EXPIRE for a message Redis could not route: its payload names the cause.
EXPIRE_UNROUTED = {"type": "EXPIRE", "payload": STORE_UNREACHABLE}


async def drain(c: Client, duration: float) -> list[dict[str, object]]:
    """Everything ``c`` receives within ``duration`` seconds."""
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + duration
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(await c.recv(left))
        except (TimeoutError, asyncio.TimeoutError):
            break
    return got


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def in_redis(url: str, broker: Broker, command: str, key: str, expected: int) -> None:
    """Wait until ``command key`` under the broker's prefix answers ``expected``."""
    store = redis.asyncio.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while (
            got := await store.execute_command(command, broker.config.redis_prefix + key)
        ) != expected:
            assert time.monotonic() < deadline, f"{command} {key}: {got}, not {expected}"
            await asyncio.sleep(0.02)
    finally:
        await store.aclose()


async def test_one_expire_per_sender_and_destination_across_instances(
    redis_server: RedisServer,
) -> None:
    """Senders on two instances, all three instances sweeping: one EXPIRE each."""
    async with (
        run_cluster(redis_server.url, expire_timeout=0.5) as target,
        peer_client(target, "s1") as s1,
        peer_client(target, "s2") as s2,
    ):
        for _ in range(3):
            await s1.send({**OFFER, "dst": "ghost"})
            await s2.send({**OFFER, "dst": "ghost"})
        for sender, name in ((s1, "s1"), (s2, "s2")):
            got = await drain(sender, 2.5)
            assert got == [{"type": "EXPIRE", "src": "ghost", "dst": name}]
        assert sum(broker.stats.expired for broker in target.brokers) == 2


async def test_queue_on_one_instance_is_delivered_on_another(redis_server: RedisServer) -> None:
    async with (
        run_cluster(redis_server.url, expire_timeout=5) as target,
        peer_client(target, "early") as early,  # on instance 1
    ):
        for n in range(3):
            await early.send({**OFFER, "dst": "late", "payload": {"n": n}})
        await in_redis(redis_server.url, target.brokers[0], "LLEN", "q:late", 3)  # queued
        target.ws_url()  # skip instance 2: "late" registers on instance 3
        async with peer_client(target, "late") as late:
            got = [await late.recv() for _ in range(3)]
        assert [m["payload"] for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert all(m["src"] == "early" for m in got)
        assert await drain(early, 0.5) == []  # delivered: no EXPIRE


async def test_peers_lists_the_whole_cluster_and_ids_are_cluster_wide(
    redis_server: RedisServer,
) -> None:
    async with (
        run_cluster(redis_server.url, allow_discovery=True) as target,
        peer_client(target, "a"),
        peer_client(target, "b"),
        peer_client(target, "c"),
    ):
        assert len({broker.realm.ids()[0] for broker in target.brokers}) == 3  # one each
        for port in target.ports:
            status, _, body = await http_request(port, "GET", "/myapp/peerjs/peers")
            assert status == 200
            assert sorted(json.loads(body)) == ["a", "b", "c"]
        # "a" lives on instance 1; another token on instance 2 or 3 is refused.
        for _ in range(2):
            async with client(target.ws_url(id="a", token="other")) as thief:
                assert await thief.recv() == {"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}
        status, _, body = await http_request(target.port, "GET", "/myapp/health")
        assert status == 200
        assert json.loads(body)["redis"] == "up"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def wait_health(target: Target, status: int, within: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + within
    while True:
        code, _, body = await http_request(target.port, "GET", "/myapp/health")
        if code == status:
            report: dict[str, object] = json.loads(body)
            return report
        assert time.monotonic() < deadline, f"health stayed {code}: {body!r}"
        await asyncio.sleep(0.1)


async def test_redis_restart_keeps_brokers_serving_and_recovers(own_redis: RedisServer) -> None:
    """Redis killed: local relay goes on, cross-instance messages get EXPIRE, new
    registrations get ERROR, health is 503; Redis back: ids are claimed again and
    cross-instance relay works again."""
    async with (
        run_cluster(own_redis.url, size=2, alive_timeout=3) as target,
        peer_client(target, "alice") as alice,  # instance 1
        peer_client(target, "bob") as bob,  # instance 2
        peer_client(target, "carol") as carol,  # instance 1 again
    ):
        own_redis.stop()
        assert (await wait_health(target, 503))["redis"] == "down"
        await alice.send({**OFFER, "dst": "carol"})  # same instance: still relayed
        assert (await carol.recv())["src"] == "alice"
        await alice.send({**OFFER, "dst": "bob"})  # other instance: EXPIRE, not silence
        assert await alice.recv(10) == {**EXPIRE_UNROUTED, "src": "bob", "dst": "alice"}
        async with client(target.ws_url(id="dave", token="t")) as dave:
            message = await dave.recv(10)
            assert message["type"] == "ERROR"
            assert "unavailable" in message["payload"]["msg"]

        own_redis.start()  # same port, empty: ids must be claimed again
        assert (await wait_health(target, 200))["redis"] == "up"
        deadline = time.monotonic() + 10
        while True:  # the next refresh (alive_timeout / 3) claims the ids again
            await alice.send({**OFFER, "dst": "bob"})
            got = await drain(bob, 0.5)
            if got:
                assert got[0]["src"] == "alice"
                break
            assert time.monotonic() < deadline, "cross-instance relay did not come back"
        async with client(target.ws_url(id="bob", token="other")) as thief:
            assert (await thief.recv())["type"] == "ID-TAKEN"


async def test_graceful_stop_releases_ids_at_once(redis_server: RedisServer) -> None:
    """A broker shut down gracefully frees its ids in Redis: no wait for alive_timeout."""
    async with run_cluster(redis_server.url, size=2) as target:
        async with peer_client(target, "x", "one") as x:  # instance 1
            await target.brokers[0].aclose()
            assert await x.closed() == 1001
        async with peer_client(target, "x", "two"):  # instance 2, another token: OPEN
            pass


async def test_unreachable_redis_at_start_serves_errors_not_crashes() -> None:
    """No Redis at all: the broker starts, says 503, and refuses registrations with ERROR."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with run_ours(redis_url=url) as target:
        status, _, body = await http_request(target.port, "GET", "/myapp/health")
        assert status == 503
        assert json.loads(body)["status"] == "redis-down"
        async with client(target.ws_url(id="a", token="t")) as c:
            message = await c.recv(10)
            assert message["type"] == "ERROR"
            assert "unavailable" in message["payload"]["msg"]
            assert await c.closed() is not None


def test_bad_redis_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="must start with redis://"):
        config_from_args(build_parser().parse_args(["-p", "0", "--redis", "localhost:6379"]))


# -- the owner cache: routes to a cached instance skip the Lua lookup ----------------


async def cache_owner(target: Target, s: Client, d: Client) -> Cluster:
    """Relay one OFFER from ``s`` (instance 1) to ``d`` and wait until instance 1
    has cached ``d``'s owner; return instance 1's cluster."""
    one = target.brokers[0].cluster
    assert one is not None
    await s.send({**OFFER, "dst": "d"})
    assert (await d.recv())["src"] == "s"
    await until(lambda: "d" in one._owners)
    return one


async def test_cached_owner_is_used_then_invalidated_when_the_id_moves(
    redis_server: RedisServer,
) -> None:
    """A takeover on another instance: messages sent on the stale cache still arrive,
    in order, and the sender's instance forgets the old owner."""
    async with (
        run_cluster(redis_server.url, size=3) as target,
        peer_client(target, "s") as s,  # instance 1
        peer_client(target, "d", "tok") as d,  # instance 2
    ):
        one, two, three = (broker.cluster for broker in target.brokers)
        assert one is not None
        assert two is not None
        assert three is not None
        await s.send({**OFFER, "dst": "d", "payload": {"n": 0}})
        assert (await d.recv())["payload"] == {"n": 0}
        await until(lambda: one._owners.get("d") is not None)
        assert one._owners["d"] == two.instance
        await s.send({**OFFER, "dst": "d", "payload": {"n": 1}})  # the direct path
        assert (await d.recv())["payload"] == {"n": 1}
        before = target.brokers[0].stats.redis_round_trips

        async with peer_client(target, "d", "tok") as moved:  # instance 3, same token
            assert await d.closed() == 1000
            for n in range(2, 6):  # sent to instance 2 on the cache: forwarded
                await s.send({**OFFER, "dst": "d", "payload": {"n": n}})
            got = [await moved.recv() for _ in range(4)]
            assert [m["payload"] for m in got] == [{"n": n} for n in range(2, 6)]
            assert all(m["src"] == "s" for m in got)
            # Instance 2 told instance 1 to forget it; ROUTE then names instance 3.
            await until(lambda: one._owners.get("d") != two.instance)
            await s.send({**OFFER, "dst": "d", "payload": {"n": 6}})
            assert (await moved.recv())["payload"] == {"n": 6}
            await until(lambda: one._owners.get("d") == three.instance)
            assert target.brokers[0].stats.redis_round_trips > before
        assert await drain(s, 0.3) == []  # nothing expired


async def test_cached_owner_that_left_means_queued_not_lost(redis_server: RedisServer) -> None:
    """The id left its (cached) instance: the message is queued cluster-wide and
    delivered when the id registers again, on another instance."""
    async with (
        run_cluster(redis_server.url, size=3, expire_timeout=10) as target,
        peer_client(target, "s") as s,  # instance 1
    ):
        async with peer_client(target, "d") as d:  # instance 2
            await s.send({**OFFER, "dst": "d", "payload": {"n": 0}})
            assert (await d.recv())["payload"] == {"n": 0}
        one = target.brokers[0].cluster
        assert one is not None
        await until(lambda: "d" in one._owners)
        await until(lambda: "d" not in target.brokers[1].realm)
        await in_redis(redis_server.url, target.brokers[1], "EXISTS", "id:d", 0)  # released
        await s.send({**OFFER, "dst": "d", "payload": {"n": 1}})  # to instance 2: gone
        await until(lambda: "d" not in one._owners)  # instance 2 said so
        async with peer_client(target, "d") as back:  # instance 3
            assert (await back.recv())["payload"] == {"n": 1}
        assert await drain(s, 0.3) == []


async def test_cached_instance_that_stopped_means_queued_then_expire(
    redis_server: RedisServer,
) -> None:
    """The cached instance is gone (no subscriber): the routes fall back to ROUTE,
    which queues them; the sender gets its one EXPIRE."""
    async with (
        run_cluster(redis_server.url, size=2, expire_timeout=1) as target,
        peer_client(target, "s") as s,  # instance 1
        peer_client(target, "d") as d,  # instance 2
    ):
        one = await cache_owner(target, s, d)
        two = target.brokers[1].cluster
        assert two is not None
        await target.brokers[1].aclose()  # unsubscribes, releases "d"
        for _ in range(3):
            await s.send({**OFFER, "dst": "d"})
        await until(lambda: two.instance not in one._owners.values())
        assert await s.recv(10) == {"type": "EXPIRE", "src": "d", "dst": "s"}
        assert await drain(s, 1.5) == []  # one EXPIRE only


async def test_redis_lost_with_a_cached_owner_gives_expire(own_redis: RedisServer) -> None:
    """Redis killed after the owner is cached: the direct publish fails and the
    sender hears EXPIRE (once per destination), the brokers keep serving."""
    async with (
        run_cluster(own_redis.url, size=2) as target,
        peer_client(target, "s") as s,  # instance 1
        peer_client(target, "d") as d,  # instance 2
        peer_client(target, "local") as local,  # instance 1
    ):
        await cache_owner(target, s, d)
        own_redis.stop()
        await wait_health(target, 503)
        for _ in range(3):
            await s.send({**OFFER, "dst": "d"})
        assert await s.recv(10) == {**EXPIRE_UNROUTED, "src": "d", "dst": "s"}
        await s.send({**OFFER, "dst": "local"})
        assert (await local.recv())["src"] == "s"
        assert await drain(s, 1.0) == []


async def test_frozen_redis_cuts_the_direct_publish_connection(own_redis: RedisServer) -> None:
    """Redis stopped (SIGSTOP) after the owner is cached: the direct publish times
    out, its connection is cut, the sender hears EXPIRE; Redis back (SIGCONT):
    a new connection relays again."""
    assert own_redis.proc is not None
    pid = own_redis.proc.pid
    async with (
        run_cluster(own_redis.url, size=2) as target,
        peer_client(target, "s") as s,  # instance 1
        peer_client(target, "d") as d,  # instance 2
    ):
        one = await cache_owner(target, s, d)
        await s.send({**OFFER, "dst": "d"})  # the direct path: opens the connection
        assert (await d.recv())["src"] == "s"
        wire = one._wire.publisher
        assert wire is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            await s.send({**OFFER, "dst": "d", "payload": {"n": 0}})
            assert await s.recv(20) == {**EXPIRE_UNROUTED, "src": "d", "dst": "s"}
            assert time.monotonic() - started >= SOCKET_TIMEOUT - 0.5  # not before the timeout
            assert one._wire.publisher is not wire  # cut, not reused out of step
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 15
        while True:  # relay comes back on a new connection
            await s.send({**OFFER, "dst": "d", "payload": {"n": 1}})
            got = [m for m in await drain(d, 0.5) if m.get("payload") == {"n": 1}]
            if got:
                break
            assert time.monotonic() < deadline, "relay did not come back after SIGCONT"
        assert one._wire.publisher is not None
        assert one._wire.publisher is not wire


# -- Redis frozen or restarted (issue 22) ------------------------------------------


async def collect(c: Client, into: list[dict[str, object]]) -> None:
    """Append everything ``c`` receives to ``into`` until cancelled or closed."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            into.append(json.loads(await c.ws.recv()))


async def test_frozen_redis_bounds_the_outbox_in_bytes(own_redis: RedisServer) -> None:
    """Redis SIGSTOPped, one client floods 256 KiB OFFERs to ids not held here: the
    outbox stays within max_queued_bytes, the sender hears EXPIRE at once, health
    says degraded and /metrics counts the refusals; SIGCONT: relaying again."""
    assert own_redis.proc is not None
    pid = own_redis.proc.pid
    budget = 4 << 20
    async with (
        run_cluster(own_redis.url, size=2, max_queued_bytes=budget) as target,
        peer_client(target, "flood") as flood,  # instance 1
        peer_client(target, "d") as d,  # instance 2
    ):
        cluster = target.brokers[0].cluster
        assert cluster is not None
        got: list[dict[str, object]] = []
        reader = asyncio.create_task(collect(flood, got))
        payload = {"sdp": "A" * (256 << 10)}
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            peak, degraded_after, sent = 0, None, 0
            while (elapsed := time.monotonic() - started) < 3.0:  # < SOCKET_TIMEOUT
                for _ in range(8):
                    await flood.send({**OFFER, "dst": f"ghost{sent % 50}", "payload": payload})
                    sent += 1
                await asyncio.sleep(0.02)
                peak = max(peak, cluster.backlog)
                if degraded_after is None:
                    code, _, body = await http_request(target.port, "GET", "/myapp/health")
                    if code == 503 and json.loads(body)["status"] == "degraded":
                        degraded_after = elapsed
            expires = [m for m in got if m["type"] == "EXPIRE"]
            assert sent * 256 >= 8 * budget >> 10  # far more than the budget was sent
            assert peak <= budget
            assert expires, "no refusal while Redis was frozen"
            assert degraded_after is not None
            assert degraded_after < 2.0
            metrics = (await http_request(target.port, "GET", "/myapp/metrics"))[2].decode()
            line = 'peerpy_broker_refusals_total{reason="cluster-backlog"} '
            (count,) = [row[len(line) :] for row in metrics.splitlines() if row.startswith(line)]
            assert float(count) >= len(expires)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (await wait_health(target, 200, within=15))["redis"] == "up"
        await until(lambda: cluster.backlog == 0)  # written or refused, all accounted for
        reader.cancel()
        deadline = time.monotonic() + 10
        while True:  # relaying across instances again
            await flood.send({**OFFER, "dst": "d", "payload": {"n": 1}})
            if [m for m in await drain(d, 0.5) if m.get("payload") == {"n": 1}]:
                break
            assert time.monotonic() < deadline, "relay did not come back after SIGCONT"


async def test_redis_restarted_empty_ids_are_claimed_again_before_new_claims(
    own_redis: RedisServer,
) -> None:
    """Redis killed and started again empty on its port: another token trying the
    victim's id on the other broker from the first instant never gets it; the
    victim's broker claims it again at once and the victim stays reachable."""
    async with (
        run_cluster(own_redis.url, size=2, alive_timeout=30) as target,  # no refresh due
        peer_client(target, "victim", "vtok") as victim,  # instance 1
        peer_client(target, "s") as s,  # instance 2
    ):
        own_redis.stop()
        await wait_health(target, 503)
        own_redis.start()
        answers: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            url = target.brokers[1].url.replace("http", "ws") + "peerjs"
            async with client(f"{url}?key=peerjs&id=victim&token=attacker") as thief:
                answers.append(str((await thief.recv(5))["type"]))
            assert answers[-1] != "OPEN", f"the attacker took the id after {answers}"
            if answers[-1] == "ID-TAKEN":
                break
            await asyncio.sleep(0.05)
        assert answers[-1] == "ID-TAKEN", answers
        await s.send({**OFFER, "dst": "victim"})
        assert (await victim.recv(5))["src"] == "s"


async def test_broker_cut_off_longer_than_alive_timeout_tells_its_clients(
    own_redis: RedisServer,
) -> None:
    """Redis gone for longer than alive_timeout: the broker's clients get an ERROR
    saying their registration was lost, then the socket closes."""
    async with (
        run_cluster(own_redis.url, size=1, alive_timeout=2) as target,
        peer_client(target, "a") as a,
    ):

        async def heartbeats() -> None:  # the realm's own alive_timeout must not fire
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await a.send({"type": "HEARTBEAT"})
                    await asyncio.sleep(0.3)

        beating = asyncio.create_task(heartbeats())
        own_redis.stop()
        started = time.monotonic()
        message = await a.recv(6)
        beating.cancel()
        assert message["type"] == "ERROR"
        assert "cluster store" in message["payload"]["msg"]
        assert time.monotonic() - started >= 1.5  # not before alive_timeout
        assert await a.closed() is not None
