"""An address policy keeps ICE off an excluded interface, counted by nftables.

Two namespaces joined by two veth pairs (documentation ranges): ``vA``
(203.0.113.0/24, allowed) and ``vB`` (198.51.100.0/24, excluded)::

    x: vA 203.0.113.1    ------  y: vA 203.0.113.2
       vB 198.51.100.1 ------     vB 198.51.100.2

The broker and the policy-bound peer run in ``x``; the other peer, in ``y``,
has no policy (it gathers and signals on both links).  An nftables counter in
``x`` counts every IP packet leaving on each veth.  Both namespaces filter
reverse paths strictly (``rp_filter=1``, a common host default): a packet
arriving on ``vA`` from a ``vB`` address is dropped, as the kernel would route
the reply out of ``vB``.  The test creates everything under a name unique to
the run and deletes it afterwards (which also removes the veths and rules).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerpy.backends import wrtc_installed

from .netlab import lab_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("peer.py")

pytestmark = [
    pytest.mark.netlab,
    pytest.mark.skipif(
        lab_unavailable_reason() is not None and os.environ.get("CI") != "true",
        reason=str(lab_unavailable_reason()),
    ),
]

X_A, X_B, Y_A, Y_B = "203.0.113.1", "198.51.100.1", "203.0.113.2", "198.51.100.2"


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


class TwoLinks:
    """The two namespaces, their veths, the counters, and the processes started in them."""

    def __init__(self) -> None:
        prefix = f"pa{os.getpid()}x{time.monotonic_ns() % 10_000}"
        self.x, self.y = f"{prefix}-x", f"{prefix}-y"
        self.processes: list[subprocess.Popen[str]] = []
        for ns in (self.x, self.y):
            _run("ip", "netns", "add", ns)
        for link in ("vA", "vB"):
            _run("ip", "-n", self.x, "link", "add", link, "type", "veth", "peer", "name", link,
                 "netns", self.y)  # fmt: skip
        for ns, a, b in ((self.x, X_A, X_B), (self.y, Y_A, Y_B)):
            for key in ("all", "default"):
                self.sysctl(ns, f"net.ipv6.conf.{key}.disable_ipv6=1")  # no link-local chatter
                self.sysctl(ns, f"net.ipv4.conf.{key}.rp_filter=1")
            for link, address in (("vA", a), ("vB", b)):
                self.sysctl(ns, f"net.ipv4.conf.{link}.rp_filter=1")
                _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", link)
                _run("ip", "-n", ns, "link", "set", link, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        rules = (
            "table inet count {\n"
            "  chain out {\n"
            "    type filter hook postrouting priority 0;\n"
            '    oifname "vA" counter\n'
            '    oifname "vB" counter\n'
            "  }\n"
            "}\n"
        )
        subprocess.run(["ip", "netns", "exec", self.x, "nft", "-f", "-"], input=rules,
                       text=True, check=True, timeout=20)  # fmt: skip

    @staticmethod
    def sysctl(ns: str, setting: str) -> None:
        _run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", setting)

    def packets_out(self) -> dict[str, int]:
        """IP packets that left ``x`` on each veth so far."""
        listing = _run(
            "ip", "netns", "exec", self.x, "nft", "list", "chain", "inet", "count", "out"
        )
        found = re.findall(r'oifname "(\w+)" counter packets (\d+)', listing)
        return {name: int(count) for name, count in found}

    def spawn(self, ns: str, *args: str) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("", "protocol", "server")),
            "PEERPY_ICE_SERVERS": "",
        }
        env.pop("PEERPY_ICE_ADDRESSES", None)
        env.pop("PEERPY_BACKEND", None)
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        for ns in (self.x, self.y):
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=20)


@pytest.fixture
def links() -> Iterator[TwoLinks]:
    lab = TwoLinks()
    try:
        yield lab
    finally:
        lab.close()


def _events(process: subprocess.Popen[str], timeout: float) -> list[dict[str, object]]:
    """The JSON lines a lab peer printed until it exited (killed after ``timeout``)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert events, err[-2000:]
    return events


def _transfer(links: TwoLinks, backend: str, ice_addresses: str | None) -> dict[str, object]:
    """Run the broker and both peers; return the connecting peer's last event."""
    port = 9000
    links.spawn(links.x, "-m", "peerpy_server.cli", "--host", X_A, "--port", str(port))
    deadline = time.monotonic() + 15
    while subprocess.run(["ip", "netns", "exec", links.x, "bash", "-c",
                          f"exec 3<>/dev/tcp/{X_A}/{port}"], capture_output=True,
                         check=False).returncode:  # fmt: skip
        assert time.monotonic() < deadline, "the broker did not start"
        time.sleep(0.1)
    server = f"http://{X_A}:{port}/"
    listener = links.spawn(links.y, str(PEER), "listen", "yy", "--server", server)
    args = [str(PEER), "connect", "xx", "yy", "--server", server, "--backend", backend]
    if ice_addresses is not None:
        args += ["--ice-addresses", ice_addresses]
    connector = links.spawn(links.x, *args, "--size", str(16 << 20), "--deadline", "30")
    events = _events(connector, timeout=40)
    listener.kill()
    assert events[0]["event"] == "registered"
    assert events[0]["backend"] == backend
    return events[-1]


@pytest.mark.parametrize("backend", ["wrtc", "aiortc"])
def test_no_packet_leaves_on_the_excluded_interface(links: TwoLinks, backend: str) -> None:
    """ice_addresses=[vA's address]: a 16 MiB echo over vA and not one IP packet out of vB,
    on wrtc (which gathers on every interface) as on aiortc, though the remote signals
    candidates on both links."""
    if backend == "wrtc" and not wrtc_installed():
        pytest.fail("wrtc is not installed: run scripts/setup")
    done = _transfer(links, backend, ice_addresses=X_A)
    assert done["event"] == "done", done
    assert done["ok"] is True
    route = done["route"]
    assert isinstance(route, dict)
    assert route["remote_address"][0] == Y_A
    counts = links.packets_out()
    assert counts["vA"] > 100  # the transfer (and the counter) did run
    assert counts["vB"] == 0, counts


def test_without_a_policy_wrtc_uses_both_links(links: TwoLinks) -> None:
    """The control: with no address policy, wrtc's checks do leave on vB (so the counter
    above can see a leak)."""
    if not wrtc_installed():
        pytest.fail("wrtc is not installed: run scripts/setup")
    done = _transfer(links, "wrtc", ice_addresses=None)
    assert done["event"] == "done", done
    counts = links.packets_out()
    assert counts["vB"] > 0, (counts, done)
