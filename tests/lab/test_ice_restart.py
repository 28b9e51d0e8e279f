"""ICE restart across a real address change (the lab; peerpy.icerestart).

Two wrtc peers on the broker's segment: B streams sequence-numbered messages
to A (tests/lab/stream.py) and B's address changes mid-stream (new added, old
removed).  Between two wrtc peers the connection must resume on the *same*
peer connection (an ICE restart, new candidates on the new address), every
message once and in order, the stream stalling at most 15 s.  Pairs with an
aiortc end, which cannot restart ICE, are tests/lab/test_resumption.py's.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .fixture import read_event
from .netlab import Lab
from .segment import SERVER, STREAM, segment_lab, stream_env

pytestmark = [pytest.mark.netlab, pytest.mark.timeout(90)]

#: Seconds of streaming before the address changes, and after.
BEFORE, AFTER = 3.0, 16.0


@pytest.fixture
def lab() -> Iterator[Lab]:
    with segment_lab(wrtc=True) as lab:
        yield lab


def events_until_done(process: Any, seconds: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["event"] not in ("done", "error"):
        events.append(read_event(process, seconds))
    return events


def pair_ends(route: str) -> tuple[str, str]:
    """The local and remote ``host:port`` of a route as stream.py prints it."""
    local, remote = route.split(", ", 1)[1].split(" ↔ ")
    return local, remote


def test_an_address_change_is_resumed_by_an_ice_restart(lab: Lab) -> None:
    """B's address changes mid-stream: A gets every message once, in order, within a 15 s
    stall, and both sides resume on the peer connection they opened (an ICE restart)."""
    lab.add_segment_host("a", "203.0.113.10")
    lab.add_segment_host("b", "203.0.113.20")
    tag = str(os.getpid())
    receiver = lab.spawn("a", [sys.executable, str(STREAM), "recv", f"ra{tag}",
                               "--server", SERVER], env=stream_env("wrtc"))  # fmt: skip
    assert read_event(receiver, 30)["event"] == "ready"
    sender = lab.spawn("b", [sys.executable, str(STREAM), "send", f"sb{tag}", f"ra{tag}",
                             "--server", SERVER, "--seconds", str(BEFORE + AFTER)],
                       env=stream_env("wrtc"))  # fmt: skip
    for process in (receiver, sender):
        opened = read_event(process, 30)
        assert opened["event"] == "open", opened
        assert opened["backend"] == "wrtc"
    time.sleep(BEFORE)
    lab.ip(lab.ns("b"), "addr", "add", "203.0.113.30/24", "dev", "eth0")
    lab.ip(lab.ns("b"), "addr", "del", "203.0.113.20/24", "dev", "eth0")
    received = events_until_done(receiver, AFTER + 40)
    sent = [read_event(sender, 30)]  # its session lost and registered again, its resume
    while sent[-1]["event"] not in ("resumed", "error"):
        sent.append(read_event(sender, 30))
    done = received[-1]
    assert done["event"] == "done", received
    assert (done["received"], done["duplicates"], done["disorder"]) == (done["total"], 0, 0)
    assert done["stall"] <= 15.0, received
    resumed = [e for e in received + sent if e["event"] == "resumed"]
    assert len(resumed) >= 2, (received, sent)  # both sides
    assert all(e["same_pc"] for e in resumed), (received, sent)
    # Both on B's new address: B's own route leaves from it; A's goes to it, or to the
    # same port at an address libwebrtc does not disclose (a peer-reflexive remote: B's
    # check arrived before its trickled candidate).
    b_resumed = [e for e in sent if e["event"] == "resumed"]
    assert b_resumed, sent
    b_local = pair_ends(b_resumed[-1]["route"])[0]
    assert b_local.startswith("203.0.113.30:"), sent
    b_port = b_local.rsplit(":", 1)[1]
    for event in received:
        if event["event"] == "resumed":
            remote = pair_ends(event["route"])[1]
            assert remote in (f"203.0.113.30:{b_port}", f"?:{b_port}"), (received, sent)
    print(f"stall {done['stall']} s; resumed {resumed}")
