"""Resumable connections across real network changes (the lab; peerpy.generation).

Three lab hosts on one segment: the broker in ``pub`` (203.0.113.1), the
receiver A and the sender B.  B streams sequence-numbered messages to A
(~125 a second, tests/lab/stream.py) while B's network changes; A must get
every message once and in order, and the stream may stall at most 15 s (an
address change) or the outage plus 8 s (a link down).  A resuming sender's
``send()`` waits, and what it held goes at once after (the receiver measures
the gap between two messages), so the stream need not outlast the bound: it
goes on :data:`AFTER` seconds past the change.  The three backend
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
from pathlib import Path
from typing import Any

import pytest

from .fixture import read_event
from .netlab import Lab, NatKind
from .segment import SERVER, STREAM, segment_lab, stream_env

pytestmark = [pytest.mark.netlab, pytest.mark.timeout(150)]

CONNTRACK = os.path.join(os.path.dirname(__file__), "conntrack.py")
#: (A's backend, B's backend) of each pair, side by side.
PAIRS = [("aiortc", "aiortc"), ("wrtc", "wrtc"), ("aiortc", "wrtc")]
#: The pairs whose path change is survived only by resuming: aiortc cannot
#: restart ICE or move to a new path.  libwebrtc's ICE often follows a changed
#: path (a new NAT mapping, another route) on the same peer connection by
#: itself (cases 3 and 4), which the checks accept: no message lost or doubled.
ALWAYS_RESUME = [("aiortc", "aiortc")]
#: What stream.py reports about its broker session (not about the connection).
SESSION_EVENTS = ("peer-error", "registered")
#: Seconds of streaming before the network changes.
BEFORE = 2.0
#: Seconds of streaming scheduled after the change (or after a link's outage).
AFTER = 6.0


@pytest.fixture
def lab() -> Iterator[Lab]:
    with segment_lab(wrtc=True) as lab:
        yield lab


#: Per pair: (A's backend, B's backend), A's events, when the change was made, the logs.
Results = list[tuple[tuple[str, str], list[dict[str, Any]], float, str]]

#: Makes pair ``index``'s two lab hosts and returns their names (A's, B's).
Placement = Callable[[Lab, int], tuple[str, str]]


def on_the_segment(lab: Lab, index: int) -> tuple[str, str]:
    """A and B both on the broker's segment (203.0.113.1x and .2x), no NAT."""
    a, b = f"a{index}", f"b{index}"
    lab.add_segment_host(a, f"203.0.113.{10 + index}")
    lab.add_segment_host(b, f"203.0.113.{20 + index}")
    return a, b


def stream_across(
    lab: Lab,
    change: Callable[[str], None],
    *,
    seconds: float,
    place: Placement = on_the_segment,
    logs: Path,
) -> Results:
    """Run each pair's stream, call ``change(B's namespace)`` on every B after BEFORE s.

    Returns, per pair, A's events, the monotonic time the change was made and
    both sides' stderr (peerpy's log; kept in ``logs``).  A pair that does not
    open fails the test with its logs.
    """
    runs = []
    for index, (a_backend, b_backend) in enumerate(PAIRS):
        a, b = place(lab, index)
        tag = f"{os.getpid()}x{index}"
        a_env = dict(stream_env(a_backend), STREAM_LOG="1")
        b_env = dict(stream_env(b_backend), STREAM_LOG="1")
        with (logs / f"a{index}.log").open("wb") as a_log:
            receiver = lab.spawn(a, [sys.executable, str(STREAM), "recv", f"ra{tag}",
                                     "--server", SERVER], env=a_env,
                                 stderr=a_log.fileno())  # fmt: skip
        _wait_ready(receiver)
        with (logs / f"b{index}.log").open("wb") as b_log:
            sender = lab.spawn(b, [sys.executable, str(STREAM), "send", f"sb{tag}",
                                   f"ra{tag}", "--server", SERVER, "--seconds", str(seconds),
                                   "--wait"],
                               env=b_env, stderr=b_log.fileno(), stdin=subprocess.PIPE)  # fmt: skip
        runs.append(((a_backend, b_backend), lab.ns(b), receiver, sender))
    session: list[dict[str, Any]] = []  # broker session events before the change
    for index, (_, _, receiver, sender) in enumerate(runs):
        for process in (sender, receiver):
            try:
                opened = read_event(process, 30)
                while opened["event"] in SESSION_EVENTS:
                    session.append(opened)
                    opened = read_event(process, 30)
            except (TimeoutError, EOFError) as exc:
                why = f"pair {index} did not open: {exc}\n{_logs(logs, index)}"
                raise AssertionError(why) from exc
            assert opened["event"] == "open", f"pair {index}: {opened}\n{_logs(logs, index)}"
    if session:
        print(f"broker sessions lost and registered again before the change: {session}")
    for _, _, _, sender in runs:  # every stream starts now, BEFORE s before the change
        assert sender.stdin is not None
        sender.stdin.write(b"go\n")
        sender.stdin.flush()
    time.sleep(BEFORE)
    changed = time.monotonic()
    for _, namespace, _, _ in runs:
        change(namespace)
    results = []
    for index, (pair, _, receiver, _) in enumerate(runs):
        events: list[dict[str, Any]] = []
        while not events or events[-1]["event"] not in ("done", "error"):
            events.append(read_event(receiver, seconds + 60))
        results.append((pair, events, changed, _logs(logs, index)))
    return results


def _logs(logs: Path, index: int) -> str:
    """Pair ``index``'s stderr so far: A's, then B's."""
    text = ""
    for side in "ab":
        log = (logs / f"{side}{index}.log").read_text(errors="replace")
        text += f"--- {side.upper()}{index}\n{log[-6000:]}\n"
    return text


def _wait_ready(process: subprocess.Popen[bytes]) -> None:
    assert read_event(process, 30)["event"] == "ready"


def check(
    results: Results,
    bound: float,
    must_resume: list[tuple[str, str]] = PAIRS,
) -> None:
    """Every message once, in order; the longest stall within ``bound``; a resume seen
    on each pair of ``must_resume`` (the others may also keep their peer connection)."""
    failures = []
    for pair, events, changed, log in results:
        done = events[-1]
        summary = f"{pair}: {json.dumps(events)}\n{log}"
        if done["event"] != "done":
            failures.append(summary)
            continue
        counts = (done["received"], done["duplicates"], done["disorder"])
        resumed = any(e["event"] == "resumed" for e in events)
        missed_resume = pair in must_resume and not resumed
        if counts != (done["total"], 0, 0) or done["stall"] > bound or missed_resume:
            failures.append(summary)
        print(f"{pair}: stall {done['stall']} s, ended {done['stall_end'] - changed:.1f} s "
              f"after the change, {'resumed' if resumed else 'same peer connection'}")  # fmt: skip
    assert not failures, "\n".join(failures)


def test_stream_survives_an_address_change(lab: Lab, tmp_path: Path) -> None:
    """Case 1: B's address changes mid-stream (new added, old removed): A gets every
    message once, in order, and the stream stalls at most 15 s."""

    def change(namespace: str) -> None:
        index = namespace[-1]
        lab.ip(namespace, "addr", "add", f"203.0.113.{30 + int(index)}/24", "dev", "eth0")
        lab.ip(namespace, "addr", "del", f"203.0.113.{20 + int(index)}/24", "dev", "eth0")

    check(stream_across(lab, change, seconds=BEFORE + AFTER, logs=tmp_path), bound=15.0)


def test_stream_survives_a_link_down(lab: Lab, tmp_path: Path) -> None:
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
        results = stream_across(lab, change, seconds=BEFORE + outage + AFTER, logs=tmp_path)
    finally:
        timer.cancel()
    check(results, bound=outage + 8.0)


def test_stream_survives_a_move_to_another_nat(lab: Lab, tmp_path: Path) -> None:
    """Case 3: B, on the LANs of two cone NATs, moves from behind NAT A to behind NAT B
    (its default route switched to B's, its link to A down): every message once, in
    order; the stream stalls at most 15 s."""
    lab.add_nat("natA", NatKind.CONE)
    lab.add_nat("natB", NatKind.CONE)

    def place(lab: Lab, index: int) -> tuple[str, str]:
        a, b = f"a{index}", f"b{index}"
        lab.add_segment_host(a, f"203.0.113.{10 + index}")
        lab.add_host(b, "natA")
        lab.add_leg(b, "natB")
        return a, b

    def change(namespace: str) -> None:
        lab.ip(namespace, "route", "replace", "default", "via", "10.2.0.1", "dev", "eth1")
        lab.ip(namespace, "link", "set", "eth0", "down")

    results = stream_across(lab, change, seconds=BEFORE + AFTER, place=place, logs=tmp_path)
    check(results, bound=15.0, must_resume=ALWAYS_RESUME)


def test_stream_survives_a_conntrack_flush(lab: Lab, tmp_path: Path) -> None:
    """Case 4: B behind a symmetric NAT whose conntrack table is flushed mid-stream (every
    flow rebound, usually to a new port): every message once, in order; stalls at most 15 s."""
    lab.add_nat("natS", NatKind.SYMMETRIC)
    flushed: list[str] = []

    def place(lab: Lab, index: int) -> tuple[str, str]:
        a, b = f"a{index}", f"b{index}"
        lab.add_segment_host(a, f"203.0.113.{10 + index}")
        lab.add_host(b, "natS")
        return a, b

    def change(namespace: str) -> None:
        if not flushed:  # one NAT for every B
            lab.exec("natS", [sys.executable, CONNTRACK])
            flushed.append(namespace)

    # No pair must resume: the NAT may map a flow to the same port again after the
    # flush (seen on an aiortc pair: every message, a 0.1 s stall, the same path).
    results = stream_across(lab, change, seconds=BEFORE + AFTER, place=place, logs=tmp_path)
    check(results, bound=15.0, must_resume=[])
