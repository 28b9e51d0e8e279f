"""``GET /ice`` on real brokers: cluster-wide id/token checks, the key, guessing bounded.

Behind a load balancer a peer's WebSocket and its ``/ice`` request land on
different instances: a cluster of two brokers on a real ``redis-server``
answers ``/ice`` on either.  One address guessing tokens gets 429 after a
burst, counted in ``/metrics`` and logged as one rate-limited WARNING.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
import urllib.parse

import pytest
from peerpy_server import Broker, BrokerConfig
from peerpy_server.cluster import instance
from peerpy_server.core.ice_access import FAILURE_BURST
from websockets.asyncio.client import connect

from ...helpers.http import http_request
from ...helpers.redis import running_redis
from ...helpers.signaling import peer_client
from ...helpers.targets import run_cluster, run_ours

pytestmark = pytest.mark.anyio

TURN = {"turn_urls": ("turn:turn.example:3478",), "turn_secret": "s3cret", "turn_ttl": 600}


async def ice(port: int, peer_id: str, token: str, key: str = "peerjs") -> tuple[int, bytes]:
    query = urllib.parse.urlencode({"id": peer_id, "token": token})
    status, _, body = await http_request(port, "GET", f"/myapp/{key}/ice?{query}")
    return status, body


async def refusals(port: int) -> dict[str, float]:
    """``refusals_total`` by reason, from ``/metrics``."""
    _, _, body = await http_request(port, "GET", "/myapp/metrics")
    prefix = 'peerpy_broker_refusals_total{reason="'
    counts = {}
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            reason, _, value = line[len(prefix) :].partition('"} ')
            counts[reason] = float(value)
    return counts


async def test_a_peer_of_one_instance_gets_its_servers_from_another() -> None:
    """alice registered on instance A asks instance B: 200 with her TURN credentials;
    a wrong token or an unknown id is still 401; once she left, 401 on B too."""
    with running_redis() as redis_server:
        async with run_cluster(redis_server.url, size=2, **TURN) as target:
            one, two = target.ports
            async with peer_client(target, "alice", token="tok-a"):  # on instance A
                assert target.brokers[0].realm.client("alice") is not None
                status, body = await ice(two, "alice", "tok-a")
                assert status == 200, body
                [turn] = json.loads(body)
                assert turn["username"].endswith(":alice")
                assert (await ice(one, "alice", "tok-a"))[0] == 200
                assert await ice(two, "alice", "tok-b") == (401, b"Unauthorized")
                assert await ice(two, "bob", "tok-a") == (401, b"Unauthorized")
            deadline = time.monotonic() + 5
            while (await ice(two, "alice", "tok-a"))[0] != 401:  # released in Redis
                assert time.monotonic() < deadline, "alice still granted after she left"
                await asyncio.sleep(0.05)
            assert (await refusals(two))["ice-refused"] >= 2


async def test_frozen_redis_bounds_the_wait_and_local_peers_still_get_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis stopped (SIGSTOP): B answers 503 for A's peer within the lookup's wait
    (the SDK retries), A still serves its own peer from its realm."""
    monkeypatch.setattr(instance, "LOOKUP_WAIT", 0.5)
    with running_redis() as redis_server:
        assert redis_server.proc is not None
        async with (
            run_cluster(redis_server.url, size=2, **TURN) as target,
            peer_client(target, "alice", token="tok-a"),  # on instance A
        ):
            one, two = target.ports
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                assert await ice(two, "alice", "tok-a") == (503, b"Service Unavailable")
                assert time.monotonic() - started < 2.0
                assert (await ice(one, "alice", "tok-a"))[0] == 200
                assert (await ice(one, "alice", "wrong"))[0] == 401  # its own client
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            assert (await refusals(two))["ice-unavailable"] == 1
            assert (await ice(two, "alice", "tok-a"))[0] == 200


async def test_the_key_is_checked() -> None:
    """The right id and token under another key are refused (the WebSocket checks it too)."""
    async with run_ours(**TURN) as target, peer_client(target, "alice", token="tok-a"):
        assert (await ice(target.port, "alice", "tok-a"))[0] == 200
        assert await ice(target.port, "alice", "tok-a", key="WRONGKEY") == (401, b"Unauthorized")
        assert (await refusals(target.port)) == {"ice-refused": 1.0}


async def test_guessing_tokens_from_one_address_is_limited_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One address guessing alice's token: 401 for the burst, then 429 without a
    check (her own token too, from that address); another address is still served;
    /metrics counts both kinds; the log has one WARNING per kind, not one per guess."""
    config = BrokerConfig(host="127.0.0.1", port=0, path="/myapp", warning_interval=60, **TURN)
    async with Broker(config) as broker:
        url = f"ws://127.0.0.1:{broker.port}/myapp/peerjs?key=peerjs&id=alice&token=tok-a"
        async with connect(url) as ws:
            assert json.loads(await ws.recv()) == {"type": "OPEN"}
            with caplog.at_level(logging.WARNING, logger="peerpy_server.ice"):
                codes = [(await ice(broker.port, "alice", f"guess{n}"))[0] for n in range(50)]
                assert codes == [401] * FAILURE_BURST + [429] * (50 - FAILURE_BURST)
                assert await ice(broker.port, "alice", "tok-a") == (429, b"Too Many Requests")
                # 127.0.0.2 is another address (the whole 127/8 is loopback).
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", broker.port, local_addr=("127.0.0.2", 0)
                )
                writer.write(
                    b"GET /myapp/peerjs/ice?id=alice&token=tok-a HTTP/1.1\r\n"
                    b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                answer = await asyncio.wait_for(reader.read(-1), 5)
                writer.close()
                assert answer.startswith(b"HTTP/1.1 200 ")
            counts = await refusals(broker.port)
            assert counts == {
                "ice-refused": FAILURE_BURST,
                "ice-rate-limit": 50 - FAILURE_BURST + 1,
            }
            lines = [r.getMessage() for r in caplog.records if "/ice" in r.getMessage()]
            assert len(lines) == 2, lines
            assert all("127.0.0.1" in line and "alice" in line for line in lines)
            assert all("guess" not in line and "tok-a" not in line for line in lines)
