"""The command line and its broker (issue 23): a JWT broker with a key, the pasteable hint
and QR code, what ``--help`` and a wrong setting say, and ``peerpy-server``'s defaults.

Every case runs real processes (``python -m peerpy.cli``, ``python -m
peerpy_server.cli``) on 127.0.0.1, stopped by PID.  Local-network meeting
(no broker at all) is in tests/lab/test_lan_discovery.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from peerpy.cli import qr_text

from ...helpers.brokers import free_port
from ...helpers.cli import Command, commands

SECRET = "a-jwt-secret-long-enough-for-hs256-" + os.urandom(8).hex()
KEY = "meetkey"


@pytest.fixture
def procs() -> Iterator[list[Command]]:
    yield from commands()


@pytest.fixture
def jwt_broker(tmp_path: Path, procs: list[Command]) -> str:
    """``peerpy-server`` requiring a JWT and a key of its own, as a process; its URL."""
    port = free_port()
    argv = ["-H", "127.0.0.1", "-p", str(port), "--jwt-secret", SECRET, "--key", KEY]
    broker = Command(tmp_path, "broker", argv, module="peerpy_server.cli")
    procs.append(broker)
    broker.wait_for(f"listening on 127.0.0.1:{port}", stream="out")
    return f"http://127.0.0.1:{port}/"


def token(sub: str = "*") -> str:
    return jwt.encode({"sub": sub, "exp": time.time() + 600}, SECRET, algorithm="HS256")


def nameplate() -> int:
    return int.from_bytes(os.urandom(3), "big") + 1000


def test_key_and_token_reach_a_jwt_broker_and_the_hint_works_pasted(
    jwt_broker: str, tmp_path: Path, procs: list[Command]
) -> None:
    """--key/--token on the sender, PEERPY_KEY/PEERPY_TOKEN on the receiver: the printed
    line, run as printed (plus the receiver's own token), receives the file."""
    (tmp_path / "f.txt").write_text("through a JWT broker")
    code = f"{nameplate()}-apple-acorn"
    argv = ["send", str(tmp_path / "f.txt"), "--code", code, "--server", jwt_broker,
            "--key", KEY, "--token", token(), "--qr"]  # fmt: skip
    sender = Command(tmp_path, "send", argv)
    procs.append(sender)
    hint = f"peerpy receive --server {jwt_broker} --key {KEY} {code}"
    sender.wait_for(f"On the other machine run:  {hint}")
    # The QR code carries the same line, so a phone camera gets the broker too.
    sender.wait_for(qr_text(hint).splitlines()[3])
    assert qr_text(hint) != qr_text(code)
    env = dict(os.environ, PEERPY_TOKEN=token())
    pasted = shlex.split(hint)[1:]  # what follows `peerpy`
    receiver = Command(tmp_path, "receive", [*pasted, "--yes", "-o", str(tmp_path / "in")], env=env)
    procs.append(receiver)
    assert receiver.wait() == 0, receiver.err()
    assert sender.wait() == 0, sender.err()
    assert (tmp_path / "in" / "f.txt").read_text() == "through a JWT broker"
    # PEERPY_KEY works as --key does; without a token the broker refuses, and says so.
    env = dict(os.environ, PEERPY_KEY=KEY)
    refused = Command(tmp_path, "refused", ["receive", code, "--server", jwt_broker], env=env)
    procs.append(refused)
    assert refused.wait() == 1
    assert "token" in refused.err().lower(), refused.err()


def test_wrong_settings_fail_at_start_and_help_shows_the_defaults(
    tmp_path: Path, procs: list[Command]
) -> None:
    (tmp_path / "f").write_text("x")
    started = time.monotonic()
    bad = Command(tmp_path, "bad", ["send", str(tmp_path / "f"), "--ice-addresses", "198.51.100.7"])
    procs.append(bad)
    assert bad.wait() == 2
    assert bad.err().strip() == (
        "peerpy send: --ice-addresses: 198.51.100.7 is not an address of this machine "
        "(its addresses: 127.0.0.1, ::1)"
    )
    assert time.monotonic() - started < 20  # at start, not after a negotiation timeout
    shown = subprocess.run(
        [sys.executable, "-m", "peerpy.cli", "receive", "--help"],
        capture_output=True, text=True, timeout=30, check=True,
        env=dict(os.environ, COLUMNS="300"),
    ).stdout  # fmt: skip
    assert "default: PEERPY_SERVER, else none: send/receive/chat meet on the local network" in shown
    assert "default: PEERPY_KEY, else peerjs" in shown
    assert "(default 10 s)" in shown


def test_peerpy_server_listens_on_9000_by_default_and_logs_every_address(
    tmp_path: Path, procs: list[Command]
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    server = Command(tmp_path, "server", ["-H", "127.0.0.2", "-H", "127.0.0.3"],
                     module="peerpy_server.cli", env=env)  # fmt: skip
    procs.append(server)
    server.wait_for("listening on 127.0.0.3:9000", stream="out")
    assert "listening on 127.0.0.2:9000" in server.out()
    assert server.out().startswith("Started PeerServer on 127.0.0.2, 127.0.0.3, port: 9000")
