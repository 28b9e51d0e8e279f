"""The coturn configuration the docs show is the one the NAT lab runs, and it denies what it must.

docs/turnserver.conf is quoted verbatim by docs/deploy.md and docs/broker.md;
tests/lab/fixture.py runs it with only the secret and its log and pid files
changed.  The lab itself (tests/lab/test_netlab.py) checks that the real coturn
refuses CreatePermission towards the denied ranges.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from ...lab.fixture import COTURN_CONFIG, coturn_config
from ...lab.netlab import PUB_ADDRESS

DOCS = Path(__file__).resolve().parents[3] / "docs"

#: Every range no relay may reach (issue 22, item 4).
MUST_DENY = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::1/128", "fc00::/7", "fe80::/10", "::ffff:0:0/96",
]  # fmt: skip


def _ini_blocks(page: str) -> list[str]:
    return re.findall(r"```ini\n(.*?)```", (DOCS / page).read_text(), re.DOTALL)


def test_the_docs_quote_the_configuration_file_verbatim() -> None:
    text = COTURN_CONFIG.read_text()
    for page in ("deploy.md", "broker.md"):
        assert text in _ini_blocks(page), page


def test_the_lab_changes_only_the_secret_and_its_files() -> None:
    documented = COTURN_CONFIG.read_text().splitlines()
    lab = coturn_config(secret="lab", log_file="/tmp/x.log", pid_file="/tmp/x.pid").splitlines()
    changed = [(a, b) for a, b in zip(documented, lab, strict=True) if a != b]
    assert changed == [
        ("static-auth-secret=SECRET", "static-auth-secret=lab"),
        ("log-file=/var/log/turnserver.log", "log-file=/tmp/x.log"),
        ("pidfile=/run/turnserver.pid", "pidfile=/tmp/x.pid"),
    ]
    assert f"listening-ip={PUB_ADDRESS}" in documented
    assert f"relay-ip={PUB_ADDRESS}" in documented


def test_the_denied_ranges_cover_every_non_public_range() -> None:
    """Each must-deny network lies inside one denied-peer-ip range; TCP relays are off."""
    lines = COTURN_CONFIG.read_text().splitlines()
    assert "no-tcp-relay" in lines
    assert "no-multicast-peers" in lines
    assert "allow-loopback-peers" not in lines
    ranges = []
    for line in lines:
        if line.startswith("denied-peer-ip="):
            low, _, high = line.removeprefix("denied-peer-ip=").partition("-")
            first = ipaddress.ip_address(low)
            last = ipaddress.ip_address(high or low)
            assert first.version == last.version, line
            assert first <= last, line
            assert str(first) != "::", "coturn reads a range from :: as any address"
            ranges.append((first, last))
    for network in map(ipaddress.ip_network, MUST_DENY):
        assert any(
            low.version == network.version
            and low <= network.network_address
            and network.broadcast_address <= high
            for low, high in ranges
        ), network
    # And nothing public, nor the lab's own "Internet", is denied.
    for public in ("203.0.113.7", "198.51.100.7", "8.8.8.8", "2001:db8::7", "2606:4700::1"):
        address = ipaddress.ip_address(public)
        assert not any(
            low.version == address.version and low <= address <= high for low, high in ranges
        ), public
