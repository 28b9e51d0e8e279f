"""JWT in production, over real sockets: --jwt-audience, short secrets, refusal logs."""

from __future__ import annotations

import asyncio
import logging
import sys

import jwt
import pytest

from ...helpers.signaling import client, peer_client
from ...helpers.targets import run_ours

pytestmark = pytest.mark.anyio

SECRET = "jwt-policy-secret-of-32-bytes-ok!"


def _token(sub: str, **claims: object) -> str:
    return jwt.encode({"sub": sub, **claims}, SECRET, algorithm="HS256")


async def test_cli_refuses_a_short_hs256_secret_with_status_2() -> None:
    """`peerpy-server --jwt-secret <31 bytes>` exits 2 at startup and says why."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerpy_server.cli", "-H", "127.0.0.1", "-p", "0",
        "--jwt-secret", "x" * 31,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"Started" not in out
    assert "the JWT secret has 31 bytes; HS256 needs at least 32" in err.decode()


async def test_audience_is_checked_and_refusals_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--jwt-audience: the right aud registers; another or none: ERROR, logged with id, address."""
    caplog.set_level(logging.INFO, logger="peerpy_server.realm")
    async with run_ours(jwt_secret=SECRET, jwt_audience="peers.example") as target:
        assert target.broker is not None
        async with peer_client(target, "alice", _token("alice", aud="peers.example")):
            pass
        for bad in (_token("bob", aud="chat.example"), _token("bob")):
            async with client(target.ws_url(id="bob", token=bad)) as c:
                error = await c.recv()
                assert error["type"] == "ERROR"
                assert error["payload"]["msg"] == "Invalid token: not for this audience"
        assert target.broker.stats.refused["invalid-token"] == 2
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Refused id")]
    assert refusals == ["Refused id bob from 127.0.0.1: Invalid token: not for this audience"] * 2
