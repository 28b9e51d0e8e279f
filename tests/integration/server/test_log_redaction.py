"""Tokens stay out of the logs: a real DEBUG session of the CLI broker and an SDK peer.

The broker runs as ``python -m peerpy_server.cli --log-level DEBUG`` with JWTs
required; a peerpy ``Peer`` registers with a JWT, and raw requests carry the
token where clients put it (the WebSocket handshake, ``GET <key>/ice``, a
refused upgrade).  Neither the broker's stderr nor the SDK's DEBUG records may
hold the token, and the lines that used to show it must still be there,
redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator

import jwt
import pytest

import peerpy

from ...helpers.brokers import free_port, wait_listening
from ...helpers.http import http_request
from ...helpers.signaling import client

pytestmark = pytest.mark.anyio

SECRET = "log-redaction-secret-of-32-bytes!!"
REDACTED = "[redacted]"  # peerpy_protocol.redact.REDACTED


@contextlib.asynccontextmanager
async def debug_broker(port: int, log_format: str) -> AsyncIterator[list[str]]:
    """The CLI broker at DEBUG; yields a list that holds its stderr lines once it stopped."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerpy_server.cli", "-H", "127.0.0.1", "-p", str(port),
        "--path", "/myapp", "--log-level", "DEBUG", "--log-format", log_format,
        "--jwt-secret", SECRET,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[str] = []
    try:
        await asyncio.to_thread(wait_listening, port)
        yield lines
        proc.send_signal(signal.SIGTERM)  # by PID: the process started here
        assert proc.stderr is not None
        err = await asyncio.wait_for(proc.stderr.read(), 15)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        lines.extend(err.decode().splitlines())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_debug_logs_of_a_real_session_hold_no_token(
    log_format: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Broker and SDK at DEBUG: every line that showed the JWT shows [redacted] instead."""
    caplog.set_level(logging.DEBUG)
    port = free_port()
    token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    other = jwt.encode({"sub": "*"}, SECRET, algorithm="HS256")
    signature = token.rsplit(".", 1)[1]
    async with debug_broker(port, log_format) as broker_log:
        url = f"http://127.0.0.1:{port}/myapp/"
        async with peerpy.Peer("alice", server=url, token=token) as alice:
            assert alice.open
            ice = "/myapp/peerjs/ice?id=alice&token="
            status, _, _ = await http_request(port, "GET", ice + token)
            assert status == 200
            status, _, _ = await http_request(port, "GET", ice + "guess")
            assert status == 401
        # A refused upgrade (wrong path) logs its path; a bad token is refused.
        with contextlib.suppress(Exception):
            async with client(f"ws://127.0.0.1:{port}/elsewhere?id=x&token={other}"):
                pass
        refused = f"ws://127.0.0.1:{port}/myapp/peerjs?key=peerjs&id=bob&token={other}x"
        async with client(refused) as c:
            assert (await c.recv())["type"] == "ERROR"
    text = "\n".join(broker_log)
    assert text, "the broker logged nothing"
    for secret in (token, signature, other, "token=guess"):
        assert secret not in text, secret
        assert secret not in caplog.text, secret
    # The request lines are still logged, with the token redacted.
    assert f"/myapp/peerjs?key=peerjs&id=alice&token={REDACTED}" in text
    assert f"token={REDACTED}" in caplog.text  # websockets' client log of the handshake
    assert "/elsewhere?id=x&token=" in text
    assert "Refused id bob from 127.0.0.1: Invalid token" in text
