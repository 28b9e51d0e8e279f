"""What an operator sees and who may register: /health, /metrics, JSON logs, JWT tokens.

Everything runs against the real broker over real sockets on 127.0.0.1;
the tokens are made with PyJWT, the keys with cryptography.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from peerpy_server.cli import build_parser, config_from_args

from ...helpers.brokers import free_port
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


def _token(sub: str, key: object = SECRET, algorithm: str = "HS256", **claims: object) -> str:
    return jwt.encode({"sub": sub, **claims}, key, algorithm=algorithm)  # type: ignore[arg-type]


async def test_jwt_secret_admits_matching_sub_and_refuses_the_rest() -> None:
    later = int(time.time()) + 600
    async with run_ours(jwt_secret=SECRET) as target:
        # sub == id, and sub == "*": registered.
        async with (
            peer_client(target, "alice", _token("alice", exp=later)) as alice,
            peer_client(target, "bob", _token("*")) as bob,
        ):
            await alice.send({"type": "OFFER", "dst": "bob", "payload": {"sdp": "x"}})
            assert (await bob.recv())["src"] == "alice"
        refusals = {
            "missing": "not-a-jwt",
            "other sub": _token("mallory"),
            "expired": _token("alice", exp=int(time.time()) - 5),
            "wrong secret": _token("alice", key="another-secret-of-32-bytes-long!!"),
            "no sub": jwt.encode({"exp": later}, SECRET, algorithm="HS256"),
            "none alg": jwt.encode({"sub": "alice"}, None, algorithm="none"),
        }
        for name, token in refusals.items():
            async with client(target.ws_url(id="alice", token=token)) as c:
                message = await c.recv()
                assert message["type"] == "ERROR", name
                assert message["payload"]["msg"].startswith("Invalid token"), name
                assert await c.closed() is not None, name
        expired = refusals["expired"]
        async with client(target.ws_url(id="alice", token=expired)) as c:
            assert (await c.recv())["payload"]["msg"] == "Invalid token: expired"
        # A same-token takeover still works with the JWT as token.
        token = _token("alice", exp=later)
        async with (
            peer_client(target, "alice", token) as first,
            peer_client(target, "alice", token),
        ):
            assert await first.closed() == 1000
        assert target.broker is not None
        assert target.broker.stats.refused["invalid-token"] == len(refusals) + 1


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
async def test_jwt_public_key_from_the_cli(tmp_path: Path, kind: str) -> None:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    args = build_parser().parse_args(["-p", "0", "--jwt-public-key", str(pem)])
    config = config_from_args(args)
    assert config.jwt_public_key is not None
    async with run_ours(jwt_public_key=config.jwt_public_key) as target:
        async with peer_client(target, "alice", _token("alice", private, kind)):
            pass
        # A token signed with the shared-secret algorithm is refused (no key confusion).
        async with client(target.ws_url(id="bob", token=_token("bob"))) as c:
            assert (await c.recv())["type"] == "ERROR"


def test_bad_jwt_flags_are_clear_errors(tmp_path: Path) -> None:
    parser = build_parser()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    for argv, text in [
        (["--jwt-public-key", str(bad)], "cannot load the JWT public key"),
        (["--jwt-public-key", str(tmp_path / "missing.pem")], "cannot read --jwt-public-key"),
        (["--jwt-secret", "x", "--jwt-public-key", str(bad)], "not both"),
    ]:
        with pytest.raises(ValueError, match=text):
            config_from_args(parser.parse_args(["-p", "0", *argv]))


async def test_cli_logs_json_lines() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerpy_server.cli", "-H", "127.0.0.1", "-p", str(port),
        "--log-format", "json",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        first = json.loads(await asyncio.wait_for(proc.stderr.readline(), 15))
        assert first["level"] == "INFO"
        assert first["logger"] == "peerpy_server.broker"
        assert first["message"].startswith("Broker listening on")
        assert first["time"].endswith("Z")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        rest = (await proc.stderr.read()).decode().splitlines()
        assert rest
        assert all(json.loads(line)["logger"] for line in rest)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
