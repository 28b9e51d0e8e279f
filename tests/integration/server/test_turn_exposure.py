"""TURN for everyone: the startup warning and short-lived credentials, with the real CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import pytest

from ...helpers.brokers import free_port, wait_listening
from ...helpers.http import http_request
from ...helpers.signaling import peer_client
from ...helpers.targets import run_ours

pytestmark = pytest.mark.anyio

TURN = ("--turn-url", "turn:127.0.0.1:3478", "--turn-secret", "turn-secret")


async def _startup_log(*flags: str) -> str:
    """What the CLI broker logs on stderr from start to SIGTERM."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerpy_server.cli", "-H", "127.0.0.1", "-p", str(port), *flags,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_listening, port)
        proc.send_signal(signal.SIGTERM)  # by PID: the process started here
        assert proc.stderr is not None
        err = await asyncio.wait_for(proc.stderr.read(), 15)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        return err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_turn_without_jwt_warns_at_startup_naming_the_risk() -> None:
    """--turn-url without --jwt-*: one WARNING that anyone can relay; with JWT, none."""
    open_log = await _startup_log(*TURN)
    warnings = [line for line in open_log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, open_log
    assert "anyone can relay traffic through your TURN server" in warnings[0]
    assert "--jwt-secret" in warnings[0]
    secured = await _startup_log(*TURN, "--jwt-secret", "s" * 32)
    assert " WARNING " not in secured, secured
    assert " WARNING " not in await _startup_log(), "no TURN, no warning"


async def test_minted_turn_credentials_live_an_hour_by_default() -> None:
    """The default --turn-ttl is 3600 s: /ice's username expires within the hour."""
    turn = {"turn_urls": ["turn:127.0.0.1:3478"], "turn_secret": "turn-secret"}
    async with run_ours(**turn) as target, peer_client(target, "alice"):
        status, _, body = await http_request(
            target.port, "GET", "/myapp/peerjs/ice?id=alice&token=tok"
        )
    assert status == 200
    (turn,) = [server for server in json.loads(body) if "username" in server]
    expiry = int(turn["username"].split(":")[0])
    assert time.time() + 3500 < expiry <= time.time() + 3600
