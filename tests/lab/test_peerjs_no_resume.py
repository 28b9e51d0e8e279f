"""A PeerJS page's connection fails as before across a network change; a Python pair resumes.

Three lab hosts on the broker's segment: ``a`` (203.0.113.10) receives a
Python stream (tests/lab/stream.py) from ``b`` (203.0.113.20); ``b`` also
accepts a data connection from the real PeerJS 1.5.5 client in headless
Chromium on ``w`` (203.0.113.40, tests/lab/peerjs_page.py).  Then ``b``'s
address changes (case 1: .30 added, .20 removed).  The Python pair resumes:
every message once, in order, the stream stalled at most 15 s.  The PeerJS
connection gets nothing of that: the OFFER/ANSWER the page received carry no
``peerpyResume``, the Python side of it never reports ``reconnecting``, and
the page's RTCPeerConnection is ``failed`` within :data:`BROWSER_FAIL_BOUND`
seconds and stays so, no new OFFER or connection reaching the page.

What PeerJS 1.5.5 does then is what it did before resumption existed: it
closes a connection only when ``iceConnectionState`` turns ``failed`` or
``closed`` (or its data channel closes), and Chromium's ``iceConnectionState``
stays ``disconnected`` (measured: still so 100 s after the change, while
``connectionState`` was ``failed`` after ~17 s), so the page's DataConnection
stays ``open`` on a dead path until the application closes it.  The test
accepts either end (``failed`` or PeerJS's ``close``) and prints which.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.browser import CHROMIUM, PEERJS_DIST

from ..helpers.unavailable import unavailable
from .fixture import read_event
from .netlab import PUB_ADDRESS, Lab
from .segment import SERVER, STREAM, segment_lab, stream_env

pytestmark = [pytest.mark.netlab, pytest.mark.interop, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
PAGE = Path(__file__).with_name("peerjs_page.py")
#: Seconds of Python streaming before the change, and scheduled after it.
BEFORE, AFTER = 2.0, 6.0
#: Seconds from the change until the page's RTCPeerConnection is ``failed``
#: (measured: ~17 s; libwebrtc's checks time out).
BROWSER_FAIL_BOUND = 30.0
#: Messages the page sends before the change.
COUNT = 10


@pytest.fixture
def lab() -> Iterator[Lab]:
    missing = [str(p) for p in (CHROMIUM, PEERJS_DIST / "peerjs.min.js") if not p.exists()]
    if missing:
        unavailable(f"this lab test needs {missing} (see tests/interop)")
    with segment_lab(wrtc=False) as lab:
        yield lab


def _events_until(process: Any, last: tuple[str, ...], timeout: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["event"] not in last:
        events.append(read_event(process, timeout))
    return events


def test_peerjs_page_fails_as_before_while_a_python_pair_resumes(lab: Lab) -> None:
    """Case 1 with a PeerJS page beside a Python pair: only the Python pair resumes; the
    page's connection dies as before, with nothing peerpy-specific reaching the page."""
    lab.add_segment_host("a", "203.0.113.10")
    lab.add_segment_host("b", "203.0.113.20")
    lab.add_segment_host("w", "203.0.113.40")
    # Chromium offers host candidates only on the interface of its default route
    # (found with a UDP connect, no packet sent); pub drops what leaves the lab.
    lab.ip(lab.ns("w"), "route", "add", "default", "via", PUB_ADDRESS)
    tag = str(os.getpid())
    env = stream_env("aiortc")
    page_env = dict(env, PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))

    partner = lab.spawn("b", [sys.executable, str(STREAM), "recv", f"rp{tag}",
                              "--server", SERVER], env=env)  # fmt: skip
    assert read_event(partner, 30)["event"] == "ready"
    page = lab.spawn("w", [sys.executable, str(PAGE), f"w{tag}", f"rp{tag}", "--server", SERVER,
                           "--count", str(COUNT), "--wait", str(BROWSER_FAIL_BOUND + 5)],
                     env=page_env, stderr=None)  # fmt: skip
    assert read_event(page, 60)["event"] == "open"
    assert read_event(partner, 30)["event"] == "open"

    receiver = lab.spawn("a", [sys.executable, str(STREAM), "recv", f"ra{tag}",
                               "--server", SERVER], env=env)  # fmt: skip
    assert read_event(receiver, 30)["event"] == "ready"
    sender = lab.spawn("b", [sys.executable, str(STREAM), "send", f"sb{tag}", f"ra{tag}",
                             "--server", SERVER, "--seconds", str(BEFORE + AFTER)],
                       env=env)  # fmt: skip
    assert read_event(receiver, 30)["event"] == "open"
    assert read_event(sender, 30)["event"] == "open"

    time.sleep(BEFORE)
    changed = time.monotonic()
    lab.ip(lab.ns("b"), "addr", "add", "203.0.113.30/24", "dev", "eth0")
    lab.ip(lab.ns("b"), "addr", "del", "203.0.113.20/24", "dev", "eth0")

    # The Python pair resumes: every message once, in order, within the bound.
    stream = _events_until(receiver, ("done", "error"), BEFORE + AFTER + 60)
    done = stream[-1]
    assert done["event"] == "done", stream
    assert (done["received"], done["duplicates"], done["disorder"]) == (done["total"], 0, 0)
    assert done["stall"] <= 15.0, stream
    assert any(e["event"] == "resumed" for e in stream), stream

    # The page's connection fails as before: its peer connection dies, and neither
    # PeerJS nor the Python peer hears of resumption or renegotiates.
    page_end = read_event(page, BROWSER_FAIL_BOUND + 30)
    print(f"python pair: stall {done['stall']} s; page: {page_end}, "
          f"{page_end['t'] - changed:.1f} s after the change")  # fmt: skip
    assert page_end["event"] == "settled", page_end
    assert page_end["t"] - changed <= BROWSER_FAIL_BOUND, page_end
    assert page_end["connection"] == "failed" or page_end["closed"], page_end
    assert page_end["signals"] == [["ANSWER", ["connectionId", "sdp", "type"]]], page_end
    assert page_end["resume_fields"] == [], page_end
    assert page_end["incoming"] == 0, page_end
    partnered = _events_until(partner, ("done", "error"), 30)
    assert not any(e["event"] in ("reconnecting", "resumed") for e in partnered), partnered
    assert partnered[-1]["event"] == "error", partnered
    # ... and gives up as a connection with a PeerJS peer did before resumption existed.
    assert partnered[-1]["error"].startswith("RemoteGoneError"), partnered
