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
    fields = {"reconnecting": False, "path_loss_bound": 9.0, "remote_silence": None}
    return Channel(SimpleNamespace(**(fields | conn)), OPTIONS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conn", "silent", "waits"),
    [
        ({"path_loss_bound": None}, 3.0, False),  # not resumable: idle_timeout is the bound
        ({}, 3.0, True),  # nothing heard: maybe a dead path the connection will notice
        ({}, 9.0, False),  # past path_loss_bound: the connection would have noticed
        ({"reconnecting": True}, 30.0, True),  # resuming: it fails by itself if it cannot
        ({"remote_silence": 0.3}, 3.0, False),  # acknowledged 0.3 s ago: the path is alive
        ({"remote_silence": 2.5}, 3.0, True),  # heard last within a heartbeat of the silence
    ],
)
def test_a_silence_waits_for_the_connection_only_when_the_path_may_be_dead(
    conn: dict[str, Any], silent: float, waits: bool
) -> None:
    """A silent other side is reported after idle_timeout unless the path itself may be
    dead: a resumable connection whose remote's acknowledgements still arrive is alive."""
    assert channel(**conn)._may_resume(silent) is waits
