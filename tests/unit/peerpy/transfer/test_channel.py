"""The transfer channel's liveness rule on a resumable connection (no peers: a fake one)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from peerpy.transfer.channel import RESUMED_GRACE, Channel
from peerpy.transfer.options import TransferOptions

#: idle_timeout 3 s, a heartbeat every 1 s.
OPTIONS = TransferOptions(idle_timeout=3.0, heartbeat_interval=1.0)


def channel(**conn: Any) -> Channel:
    fields = {"reconnecting": False, "network_change": None, "generation": 0}
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


def test_a_connection_resumed_since_the_last_frame_gets_a_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resumed since the last frame (a new generation): its silence waits RESUMED_GRACE
    (the transport may still be backing off from the outage), then counts; without a
    resume since the last frame, a silence counts at once."""
    clock = [100.0]
    monkeypatch.setattr("peerpy.transfer.channel.time.monotonic", lambda: clock[0])
    conn = SimpleNamespace(reconnecting=False, network_change=None, generation=0)
    chan = Channel(conn, OPTIONS)  # type: ignore[arg-type]
    assert not chan._may_resume()
    conn.generation = 1  # resumed, no frame since
    assert chan._may_resume()
    clock[0] += RESUMED_GRACE - 0.1
    assert chan._may_resume()
    clock[0] += 0.2
    assert not chan._may_resume()  # the grace is over: killed or frozen after all
