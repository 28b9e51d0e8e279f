"""auto_reconnect after our own address changes (the lab; peerpy.keepalive).

A peer X on the broker's segment (203.0.113.40, ``auto_reconnect``) gets a
new address (.41 added, .40 removed).  Its broker WebSocket died with .40
without a word from the kernel; the keepalive's address check notices within
about a second, X registers again from .41 (same id, same token), and a peer
Y that then calls ``connect(X)`` reaches it and streams to it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from .fixture import read_event
from .netlab import Lab
from .segment import SERVER, STREAM, segment_lab, stream_env

pytestmark = [pytest.mark.netlab, pytest.mark.timeout(90)]

#: Seconds from the address change to X registered again (the check runs
#: every second, then one connection attempt after a jittered 0.25-0.5 s).
REGISTERED_WITHIN = 4.0


@pytest.fixture
def lab() -> Iterator[Lab]:
    with segment_lab(wrtc=False) as lab:
        yield lab


def test_a_peer_whose_address_changed_registers_again_and_is_reachable(lab: Lab) -> None:
    """X's address changes (new added, old removed): X reports its broker session lost
    (its address gone) and is registered again within seconds; Y then connects to X."""
    lab.add_segment_host("x", "203.0.113.40")
    lab.add_segment_host("y", "203.0.113.50")
    x_id, y_id = f"kx{os.getpid()}", f"ky{os.getpid()}"
    receiver = lab.spawn("x", [sys.executable, STREAM, "recv", x_id, "--server", SERVER],
                         env=stream_env("aiortc"))  # fmt: skip
    assert read_event(receiver, 30)["event"] == "ready"
    lab.ip(lab.ns("x"), "addr", "add", "203.0.113.41/24", "dev", "eth0")
    lab.ip(lab.ns("x"), "addr", "del", "203.0.113.40/24", "dev", "eth0")
    changed = time.monotonic()
    lost = read_event(receiver, 10)
    assert lost["event"] == "peer-error", lost
    assert "our address 203.0.113.40 is gone" in lost["error"], lost
    registered = read_event(receiver, 10)
    assert registered["event"] == "registered", registered
    assert registered["t"] - changed <= REGISTERED_WITHIN, registered["t"] - changed
    sender = lab.spawn("y", [sys.executable, STREAM, "send", y_id, x_id, "--server", SERVER,
                             "--seconds", "1"], env=stream_env("aiortc"))  # fmt: skip
    assert read_event(sender, 30)["event"] == "open"
    assert read_event(receiver, 30)["event"] == "open"
    done = read_event(receiver, 30)
    assert done["event"] == "done", done
    assert (done["received"], done["duplicates"], done["disorder"]) == (done["total"], 0, 0)
