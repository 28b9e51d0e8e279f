"""A NAT lab on one machine: network namespaces, veth pairs and nftables.

The topology (addresses are documentation ranges and 10.x only)::

    lanA hosts (10.1.0.x) -- natA (10.1.0.1 | 203.0.113.2) --+
                                                              +-- pub (203.0.113.1)
    lanB hosts (10.2.0.x) -- natB (10.2.0.1 | 203.0.113.3) --+

``pub`` holds a bridge (``br0``, 203.0.113.1/24) that joins the NATs' WAN
legs: the broker, its STUN responder and coturn run there.  Each NAT holds a
bridge (``brl``) for its LAN, so several hosts can share one LAN.

Every namespace is named ``<prefix>-<name>`` with a prefix unique to the run
(``pp<pid>x<n>``), created by :class:`Lab` and deleted by :meth:`Lab.close`,
which also kills, by PID, every process the lab started.  Each veth pair is
created inside a lab namespace with its other end moved straight into another
lab namespace: nothing is ever created in, or attached to, the namespace the
tests run in, so no lab packet can reach a real interface.
"""

from __future__ import annotations

import enum
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

#: The "Internet" side of the lab (RFC 5737 TEST-NET-3).
PUBLIC_NET = "203.0.113"
PUB_ADDRESS = f"{PUBLIC_NET}.1"

_counter = itertools.count()


class LabUnavailable(Exception):
    """The lab cannot be built on this machine (the message says why)."""


class NatKind(enum.Enum):
    """How a NAT maps and filters."""

    #: A home router: endpoint-independent mapping, unsolicited inbound dropped.
    CONE = "cone"
    #: A new external port for every destination (``random,fully-random``).
    SYMMETRIC = "symmetric"
    #: A cone NAT that forwards no UDP from its LAN at all (TCP only).
    UDP_BLOCKED = "udp-blocked"


def lab_unavailable_reason() -> str | None:
    """Why the lab cannot run here, or ``None`` if it can (root, ip, nft)."""
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the NAT lab needs `{tool}` (scripts/setup installs it as root)"
    return None


def _run(args: Sequence[str], *, stdin: str | None = None) -> None:
    result = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=20, check=False
    )
    if result.returncode != 0:
        raise LabUnavailable(
            f"`{' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}"
        )


def _nat_rules(kind: NatKind) -> str:
    masquerade = "masquerade random,fully-random" if kind is NatKind.SYMMETRIC else "masquerade"
    forward = ""
    if kind is NatKind.UDP_BLOCKED:
        forward = """
  chain lanfwd {
    type filter hook forward priority 0;
    iifname "brl" meta l4proto udp drop
  }"""
    # nft wants tables on several lines (a one-line table with ';' fails).
    return f"""table ip nat {{
  chain post {{
    type nat hook postrouting priority 100;
    oifname "wan" {masquerade}
  }}
}}
table ip filter {{
  chain in {{
    type filter hook input priority 0;
    iifname "wan" ct state new drop
  }}{forward}
}}
"""


#: Names of lab namespaces: ``pp<pid>x<n>-<name>``.
_LAB_NAMESPACE = re.compile(r"pp(?P<pid>\d+)x\d+-[A-Za-z0-9]+")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_namespaces() -> list[str]:
    """Delete lab namespaces left by a test run that was killed (SIGKILL skips teardown).

    Only names of our own pattern whose creating process is gone, and that no
    process runs in any more, are deleted; returns them.
    """
    reaped = []
    netns = Path("/run/netns")
    names = sorted(p.name for p in netns.iterdir()) if netns.is_dir() else []
    for name in names:
        match = _LAB_NAMESPACE.fullmatch(name)
        if match is None or _alive(int(match["pid"])):
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              timeout=10, check=False)  # fmt: skip
        if pids.returncode == 0 and not pids.stdout.strip():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10,
                           check=False)  # fmt: skip
            reaped.append(name)
    return reaped


class Lab:
    """Namespaces, links and processes of one lab; :meth:`close` removes them all."""

    def __init__(self) -> None:
        reap_stale_namespaces()
        self.prefix = f"pp{os.getpid()}x{next(_counter)}"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._nats: dict[str, int] = {}
        self._hosts: dict[str, int] = {}
        self._links = itertools.count()
        try:
            self.pub = self._build_pub()
        except BaseException:
            self.close()
            raise

    def _build_pub(self) -> str:
        pub = self._namespace("pub")
        self.ip(pub, "link", "add", "br0", "type", "bridge")
        self.ip(pub, "addr", "add", f"{PUB_ADDRESS}/24", "dev", "br0")
        self.ip(pub, "link", "set", "br0", "up")
        # The rest of "the Internet": a veth pair inside pub (no ARP) whose far end
        # silently drops what pub sends to addresses outside the lab, such as the
        # peers' private 10.x host candidates.  Without a route such sends fail
        # with ENETUNREACH, and coturn then closes the allocation that sent them.
        self.ip(pub, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
        self.ip(pub, "link", "set", "up0", "arp", "off", "up")
        self.ip(pub, "link", "set", "up1", "up")
        self.ip(pub, "route", "add", "default", "dev", "up0")
        return pub

    # -- building ---------------------------------------------------------

    def ns(self, name: str) -> str:
        """The full namespace name of lab namespace ``name``."""
        return f"{self.prefix}-{name}"

    def _namespace(self, name: str) -> str:
        full = self.ns(name)
        _run(["ip", "netns", "add", full])
        self.namespaces.append(full)
        self.ip(full, "link", "set", "lo", "up")
        return full

    def ip(self, namespace: str, *args: str) -> None:
        """Run ``ip -n namespace ARGS``."""
        _run(["ip", "-n", namespace, *args])

    def _veth(self, here: str, here_name: str, there: str, there_name: str) -> None:
        """A veth pair created in lab namespace ``here``, its peer moved to ``there``."""
        self.ip(here, "link", "add", here_name, "type", "veth", "peer", "name", there_name,
                "netns", there)  # fmt: skip
        self.ip(here, "link", "set", here_name, "up")
        self.ip(there, "link", "set", there_name, "up")

    def add_nat(self, name: str, kind: NatKind) -> str:
        """A NAT whose WAN leg is on pub's bridge; returns its public address."""
        index = len(self._nats) + 1
        self._nats[name] = index
        nat = self._namespace(name)
        port = f"w{index}"
        self._veth(self.pub, port, nat, "wan")
        self.ip(self.pub, "link", "set", port, "master", "br0")
        public = f"{PUBLIC_NET}.{index + 1}"
        self.ip(nat, "addr", "add", f"{public}/24", "dev", "wan")
        self.ip(nat, "link", "add", "brl", "type", "bridge")
        self.ip(nat, "addr", "add", f"10.{index}.0.1/24", "dev", "brl")
        self.ip(nat, "link", "set", "brl", "up")
        self.ip(nat, "route", "add", "default", "via", PUB_ADDRESS)
        _run(["ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        _run(["ip", "netns", "exec", nat, "nft", "-f", "-"], stdin=_nat_rules(kind))
        return public

    def add_host(self, name: str, nat: str) -> str:
        """A host on ``nat``'s LAN, routed through it; returns its address."""
        host = self._namespace(name)
        address = self.add_leg(name, nat, "eth0")
        self.ip(host, "route", "add", "default", "via", f"10.{self._nats[nat]}.0.1")
        return address

    def add_leg(self, name: str, nat: str, device: str = "eth1") -> str:
        """A second link of host ``name``, ``device`` on ``nat``'s LAN, without a
        default route (a test switches the default route to it); returns its address."""
        index = self._nats[nat]
        number = sum(1 for n in self._hosts.values() if n == index) + 2
        self._hosts[f"{name}:{device}"] = index
        port = f"l{next(self._links)}"
        self._veth(self.ns(nat), port, self.ns(name), device)
        self.ip(self.ns(nat), "link", "set", port, "master", "brl")
        address = f"10.{index}.0.{number}"
        self.ip(self.ns(name), "addr", "add", f"{address}/24", "dev", device)
        return address

    def add_segment_host(self, name: str, address: str) -> str:
        """A host on pub's segment itself (no NAT) at ``address`` in 203.0.113.0/24.

        Its interface is ``eth0``: a test may change its address or take it down.
        As on systemd hosts (its sysctl.d/50-default.conf), removing the
        primary address promotes a secondary one instead of removing every
        address of the subnet with it (``promote_secondaries``; a new network
        namespace has it off).
        """
        host = self._namespace(name)
        _run(["ip", "netns", "exec", host, "sysctl", "-qw",
              "net.ipv4.conf.all.promote_secondaries=1"])  # fmt: skip
        port = f"s{next(self._links)}"
        self._veth(self.pub, port, host, "eth0")
        self.ip(self.pub, "link", "set", port, "master", "br0")
        self.ip(host, "addr", "add", f"{address}/24", "dev", "eth0")
        return host

    # -- processes ---------------------------------------------------------

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdout: int | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE,
        stdin: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` in lab namespace ``name``; :meth:`close` kills it by PID."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name), *args],
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=stdin,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def exec(self, name: str, args: Sequence[str], timeout: float = 20) -> str:
        """Run ``args`` in lab namespace ``name`` to completion; return its stdout."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.ns(name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return result.stdout

    @staticmethod
    def stop(process: subprocess.Popen[bytes], grace: float = 3.0) -> None:
        """SIGTERM ``process`` (by PID), SIGKILL it after ``grace`` seconds."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    # -- teardown ---------------------------------------------------------

    def close(self) -> None:
        """Kill the lab's processes and delete its namespaces (idempotent)."""
        errors = []
        for process in reversed(self.processes):
            try:
                self.stop(process, grace=2.0)
            except Exception as exc:  # keep removing the rest
                errors.append(f"stopping pid {process.pid}: {exc}")
            for stream in (process.stdout, process.stderr, process.stdin):
                if stream is not None:
                    stream.close()
        self.processes.clear()
        for namespace in reversed(self.namespaces):
            result = subprocess.run(
                ["ip", "netns", "del", namespace], capture_output=True, text=True, check=False
            )
            if result.returncode != 0 and Path(f"/run/netns/{namespace}").exists():
                errors.append(f"deleting {namespace}: {result.stderr.strip()}")
        self.namespaces.clear()
        if errors:
            raise RuntimeError("lab teardown: " + "; ".join(errors))


def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate()`` every 50 ms until true, else raise ``TimeoutError``."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        time.sleep(0.05)
