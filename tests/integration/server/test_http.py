"""What an operator sees over HTTP (transports.http): /health and /metrics.

Everything runs against the real broker over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import json

import pytest

from ...helpers.http import health_says, http_request
from ...helpers.signaling import client, peer_client
from ...helpers.targets import run_ours
from ...helpers.waiting import eventually

pytestmark = pytest.mark.anyio

SECRET = "s3cret-for-tests-only-32-bytes!!"


async def test_health_reports_clients_and_queues_then_503_when_full() -> None:
    async with run_ours(concurrent_limit=2, expire_timeout=30) as target:
        status, headers, body = await http_request(target.port, "GET", "/myapp/health")
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body) == {
            "status": "ok", "clients": 0, "connections": 1,
            "queued_messages": 0, "queued_bytes": 0, "redis": "off",
        }  # fmt: skip
        async with peer_client(target, "alice") as alice:
            await alice.send({"type": "OFFER", "dst": "nobody", "payload": {"sdp": "x"}})
            await eventually(
                lambda: health_says(target.port, "/myapp", queued_messages=1),
                within=5,
                what="the OFFER queued",
            )
            status, _, body = await http_request(target.port, "GET", "/myapp/health")
            report = json.loads(body)
            assert status == 200
            assert report["clients"] == 1
            assert report["queued_messages"] == 1
            assert report["queued_bytes"] > 0
            async with peer_client(target, "bob"):
                status, _, body = await http_request(target.port, "GET", "/myapp/health")
                assert status == 503
                assert json.loads(body)["status"] == "full"
        # Outside the mount path there is no health endpoint.
        status, _, _ = await http_request(target.port, "GET", "/health")
        assert status == 404


async def test_metrics_count_relays_refusals_expires_and_latency() -> None:
    async with (
        run_ours(expire_timeout=0.3) as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        for _ in range(3):
            await alice.send({"type": "CANDIDATE", "dst": "bob", "payload": {"c": 1}})
            assert (await bob.recv())["type"] == "CANDIDATE"
        await alice.send({"type": "OFFER", "dst": "bob", "payload": {"sdp": "x"}})
        assert (await bob.recv())["type"] == "OFFER"
        await alice.send({"type": "OFFER", "dst": "ghost", "payload": {"sdp": "x"}})
        assert await alice.recv(5) == {"type": "EXPIRE", "src": "ghost", "dst": "alice"}
        async with client(target.ws_url(id="alice", token="other")) as thief:
            assert (await thief.recv())["type"] == "ID-TAKEN"
        async with client(target.ws_url(key="wrong", id="carol", token="t")) as bad:
            assert (await bad.recv())["type"] == "ERROR"
        status, headers, body = await http_request(target.port, "GET", "/myapp/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert float(samples["peerpy_broker_clients"]) == 2
    assert float(samples['peerpy_broker_relayed_messages_total{type="CANDIDATE"}']) == 3
    assert float(samples['peerpy_broker_relayed_messages_total{type="OFFER"}']) == 2
    assert float(samples["peerpy_broker_expires_total"]) == 1
    assert float(samples['peerpy_broker_refusals_total{reason="id-taken"}']) == 1
    assert float(samples['peerpy_broker_refusals_total{reason="invalid-key"}']) == 1
    # Every relayed message to an online peer was written: 4 observations at least.
    assert float(samples["peerpy_broker_relay_latency_seconds_count"]) >= 4
    assert float(samples['peerpy_broker_relay_latency_seconds_bucket{le="+Inf"}']) >= 4
    assert float(samples["peerpy_broker_queued_messages"]) == 0
    assert float(samples["peerpy_broker_redis_round_trips_total"]) == 0
