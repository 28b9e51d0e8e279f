"""``peerpy send``/``receive -v`` end with a one-line stats summary (peerpy.stats).

The real command line, in two child processes, through our broker on
loopback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...helpers.brokers import threaded_peerpy_server, wait_registered

#: The summary on loopback: the round trip, no loss figure on a data connection, the route.
SUMMARY = re.compile(
    r"^stats: rtt (\d+\.\d) ms, loss n/a, route direct, "
    r"127\.0\.0\.1:\d+ ↔ 127\.0\.0\.1:\d+$",
    re.MULTILINE,
)


@pytest.fixture
def broker() -> Iterator[str]:
    """Our broker (discovery on) on its own event loop thread."""
    with threaded_peerpy_server() as url:
        yield url


def test_send_and_receive_print_a_stats_line(broker: str, tmp_path: Path) -> None:
    """With -v (after or before the command), both sides print RTT, loss and route."""
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(300_000))
    nameplate = int.from_bytes(os.urandom(3), "big") + 1000
    code = f"{nameplate}-stats-line"
    cli = [sys.executable, "-m", "peerpy.cli"]
    sender = subprocess.Popen(
        [*cli, "send", str(source), "--code", code, "--server", broker, "-v"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_registered(broker, f"peerpy-xfer-{nameplate}")
        receiver = subprocess.run(
            [*cli, "-v", "receive", code, "--yes", "-o", str(tmp_path / "out"), "--server", broker],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        _, sent_err = sender.communicate(timeout=30)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert (sender.returncode, receiver.returncode) == (0, 0), receiver.stderr
    assert (tmp_path / "out" / "data.bin").read_bytes() == source.read_bytes()
    for err in (sent_err, receiver.stderr):
        found = SUMMARY.findall(err)
        assert len(found) == 1, err
        assert float(found[0]) < 1000  # under a second on loopback
