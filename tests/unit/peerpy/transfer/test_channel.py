"""The transfer channel's liveness rule on a resumable connection (no peers: a fake one)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from peerpy.transfer.channel import Channel
from peerpy.transfer.options import TransferOptions

#: idle_timeout 3 s, a heartbeat every 1 s.
OPTIONS = TransferOptions(idle_timeout=3.0, heartbeat_interval=1.0)


def channel(**conn: Any) -> Channel:
    fields = {"reconnecting": False, "network_change": None}
    return Channel(SimpleNamespace(**(fields | conn)), OPTIONS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conn", "waits"),
    [
        ({}, False),  # silent, path not known lost: killed, frozen or cut off
        ({"reconnecting": True}, False),  # resuming without a sign of a network change
        ({"reconnecting": True, "network_change": "our address 10.0.0.2 is gone"}, True),
        ({"reconnecting": True, "network_change": "bob offered generation 1"}, True),
    ],
)
def test_a_silence_waits_for_the_connection_only_on_a_network_change(
    conn: dict[str, Any], waits: bool
) -> None:
    """A silent other side is reported after idle_timeout unless its connection is resuming
    with evidence of a network change (our address gone, the remote resuming): a killed or
    frozen remote gives none."""
    assert channel(**conn)._may_resume() is waits
