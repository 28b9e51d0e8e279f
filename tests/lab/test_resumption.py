"""Resumable connections across real network changes (the lab; peerpy.generation).

Three lab hosts on one segment: the broker in ``pub`` (203.0.113.1), the
receiver A and the sender B.  B streams sequence-numbered messages to A
(~125 a second, tests/lab/stream.py) while B's network changes; A must get
every message once and in order, and the stream may stall at most 15 s (an
address change) or the outage plus 8 s (a link down).  The three backend
pairs (aiortc, wrtc, mixed) run side by side in one lab, each its own A and
B, all changed at once, to keep the wall time down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .fixture import read_event
from .netlab import Lab
from .segment import SERVER, STREAM, segment_lab, stream_env

pytestmark = [pytest.mark.netlab, pytest.mark.timeout(150)]

#: (A's backend, B's backend) of each pair, side by side.
PAIRS = [("aiortc", "aiortc"), ("wrtc", "wrtc"), ("aiortc", "wrtc")]
#: Seconds of streaming before the network changes.
BEFORE = 4.0


@pytest.fixture
def lab() -> Iterator[Lab]:
    with segment_lab(wrtc=True) as lab:
        yield lab


def stream_across(
    lab: Lab, change: Callable[[str], None], *, seconds: float
) -> list[tuple[tuple[str, str], list[dict[str, Any]], float]]:
    """Run each pair's stream, call ``change(B's namespace)`` on every B after BEFORE s.

    Returns, per pair, A's events and the monotonic time the change was made.
    """
    runs = []
    for index, (a_backend, b_backend) in enumerate(PAIRS):
        a, b = f"a{index}", f"b{index}"
        lab.add_segment_host(a, f"203.0.113.{10 + index}")
        lab.add_segment_host(b, f"203.0.113.{20 + index}")
        tag = f"{os.getpid()}x{index}"
        receiver = lab.spawn(a, [sys.executable, str(STREAM), "recv", f"ra{tag}",
                                 "--server", SERVER], env=stream_env(a_backend))  # fmt: skip
        _wait_ready(receiver)
        sender = lab.spawn(b, [sys.executable, str(STREAM), "send", f"sb{tag}", f"ra{tag}",
                               "--server", SERVER, "--seconds", str(seconds)],
                           env=stream_env(b_backend))  # fmt: skip
        runs.append(((a_backend, b_backend), lab.ns(b), receiver, sender))
    for _, _, receiver, sender in runs:
        assert read_event(receiver, 30)["event"] == "open"
        assert read_event(sender, 30)["event"] == "open"
    time.sleep(BEFORE)
    changed = time.monotonic()
    for _, namespace, _, _ in runs:
        change(namespace)
    results = []
    for pair, _, receiver, _ in runs:
        events: list[dict[str, Any]] = []
        while not events or events[-1]["event"] not in ("done", "error"):
            events.append(read_event(receiver, seconds + 60))
        results.append((pair, events, changed))
    return results


def _wait_ready(process: subprocess.Popen[bytes]) -> None:
    assert read_event(process, 30)["event"] == "ready"


def check(results: list[tuple[tuple[str, str], list[dict[str, Any]], float]], bound: float) -> None:
    """Every message once, in order; the longest stall within ``bound``; a resume seen."""
    failures = []
    for pair, events, changed in results:
        done = events[-1]
        summary = f"{pair}: {json.dumps(events)}"
        if done["event"] != "done":
            failures.append(summary)
            continue
        counts = (done["received"], done["duplicates"], done["disorder"])
        resumed = any(e["event"] == "resumed" for e in events)
        if counts != (done["total"], 0, 0) or done["stall"] > bound or not resumed:
            failures.append(summary)
        print(f"{pair}: stall {done['stall']} s, ended {done['stall_end'] - changed:.1f} s "
              "after the change")  # fmt: skip
    assert not failures, "\n".join(failures)


def test_stream_survives_an_address_change(lab: Lab) -> None:
    """Case 1: B's address changes mid-stream (new added, old removed): A gets every
    message once, in order, and the stream stalls at most 15 s."""

    def change(namespace: str) -> None:
        index = namespace[-1]
        lab.ip(namespace, "addr", "add", f"203.0.113.{30 + int(index)}/24", "dev", "eth0")
        lab.ip(namespace, "addr", "del", f"203.0.113.{20 + int(index)}/24", "dev", "eth0")

    check(stream_across(lab, change, seconds=BEFORE + 20), bound=15.0)


def test_stream_survives_a_link_down(lab: Lab) -> None:
    """Case 2: B's link goes down for 12 s (longer than remote_gone) then up: every
    message once, in order; the stream stalls at most the outage plus 8 s."""
    outage = 12.0
    down: list[str] = []

    def bring_up() -> None:
        for namespace in down:
            lab.ip(namespace, "link", "set", "eth0", "up")

    timer = threading.Timer(outage, bring_up)

    def change(namespace: str) -> None:
        lab.ip(namespace, "link", "set", "eth0", "down")
        down.append(namespace)
        if len(down) == len(PAIRS):
            timer.start()

    try:
        results = stream_across(lab, change, seconds=BEFORE + outage + 14)
    finally:
        timer.cancel()
    check(results, bound=outage + 8.0)
