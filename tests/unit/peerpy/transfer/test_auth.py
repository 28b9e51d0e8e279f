"""Transfer codes: how long a nameplate is, by where the broker is."""

from __future__ import annotations

import pytest

from peerpy.transfer.auth import LOCAL_NAMEPLATES, SHARED_NAMEPLATES, nameplate_span


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "::1", "[::1]", "10.1.2.3", "172.16.0.9", "192.168.1.20",
     "169.254.3.4", "fe80::1%eth0", "fd12::5", "::ffff:192.168.1.2", "nas", "nas.local",
     "pi.lan", "box.home.arpa", "broker.internal", "LOCALHOST."],
)  # fmt: skip
def test_a_local_or_lan_broker_keeps_short_nameplates(host: str) -> None:
    """On this machine or the local network, nameplates stay 1..999 (short to type)."""
    assert nameplate_span([host]) == LOCAL_NAMEPLATES == 999


@pytest.mark.parametrize(
    "host",
    ["0.peerjs.com", "broker.example.com", "8.8.8.8", "100.64.0.1", "2001:4860::1",
     "::ffff:8.8.8.8", "peerpy.example.org."],
)  # fmt: skip
def test_a_shared_broker_gets_long_nameplates(host: str) -> None:
    """On any other broker, a stranger trying each nameplate once (a wrong code ends
    that transfer) needs a million tries instead of 999 to end every transfer."""
    assert nameplate_span([host]) == SHARED_NAMEPLATES == 999_999


def test_one_shared_broker_among_several_makes_them_long() -> None:
    """A cluster with any broker outside the local network counts as shared."""
    assert nameplate_span(["127.0.0.1", "broker.example.com"]) == SHARED_NAMEPLATES
    assert nameplate_span(["127.0.0.1", "192.168.0.2"]) == LOCAL_NAMEPLATES
