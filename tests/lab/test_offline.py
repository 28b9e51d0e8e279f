"""A machine whose only interface is loopback connects with zero configuration.

aioice never gathers on loopback, so such a machine used to offer no candidate
and every connection timed out after 30 s.  The check runs in a fresh network
namespace (root and ``unshare`` needed; under ``CI=true`` it must run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..helpers.unavailable import unavailable

SCRIPT = Path(__file__).with_name("offline.py")


def test_loopback_only_machine_connects_without_configuration() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        reason = "needs root and unshare for a loopback-only network namespace"
        unavailable(reason)
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$1"',
         sys.executable, str(SCRIPT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["received"] == "ping"
    assert report["local_type"] == "host"
    assert report["route"].startswith("direct, 127.0.0.1:"), report
    assert report["seconds"] < 10, report
