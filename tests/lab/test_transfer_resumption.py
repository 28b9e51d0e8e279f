"""`peerpy send`/`peerpy receive` across a network change, in the same processes (the lab).

Issue 19's case 5: the real CLIs send a folder of a few files between two lab
hosts on the broker's segment while one side's address changes mid-transfer
(a new address added, the old one removed).  The transfer must finish in the
same two processes (no rerun, no reconnection under the code), every file
hash-verified, the connection resumed.  Three backend pairs (aiortc, wrtc,
mixed: wrtc sends in one case, aiortc in the other) run side by side in one
lab, each sender's link shaped to 2 MB/s so that the change lands
mid-transfer on every pair.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .netlab import Lab
from .segment import SERVER, segment_lab, stream_env

pytestmark = [pytest.mark.netlab, pytest.mark.timeout(120)]

#: (the receiver's backend, the sender's backend) of each pair, side by side: each
#: backend alone, and a mixed pair, one offer direction per case (see :func:`pairs`).
PAIRS = [("aiortc", "aiortc"), ("wrtc", "wrtc")]
MIXED = {"sender": ("aiortc", "wrtc"), "receiver": ("wrtc", "aiortc")}
#: The folder: four files of 2.5 MiB (10 MiB, ~5 s at the shaped rate).
FILES = 4
FILE_BYTES = 5 * 1024 * 1024 // 2
#: Bytes received before the address changes.
BEFORE = 1024 * 1024
RATE = "16mbit"


def make_folder(root: Path) -> dict[str, str]:
    """A folder of FILES random files; their SHA-256 by relative name."""
    folder = root / "photos"
    (folder / "raw").mkdir(parents=True)
    digests = {}
    for n in range(FILES):
        rel = f"raw/p{n}.bin" if n % 2 else f"p{n}.bin"
        data = os.urandom(FILE_BYTES)
        (folder / rel).write_bytes(data)
        digests[rel] = hashlib.sha256(data).hexdigest()
    return digests


def received_bytes(out: Path) -> int:
    """Bytes under ``out`` so far (partial files included)."""
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def change_address(lab: Lab, host: str, old: str, new: str) -> None:
    """Case 1: a new address added, the old one removed."""
    namespace = lab.ns(host)
    lab.ip(namespace, "addr", "add", f"{new}/24", "dev", "eth0")
    lab.ip(namespace, "addr", "del", f"{old}/24", "dev", "eth0")


@pytest.mark.parametrize("changed", ["sender", "receiver"])
def test_a_folder_transfer_survives_an_address_change(tmp_path: Path, changed: str) -> None:
    """Case 5: one side's address changes mid-transfer; both CLIs finish in the same
    processes, every file verified, the connection resumed (never a silence reported, no
    reconnection under the code), on aiortc, wrtc and mixed pairs."""
    digests = make_folder(tmp_path)
    pairs = [*PAIRS, MIXED[changed]]
    with contextlib.ExitStack() as files, segment_lab(wrtc=True) as lab:
        runs = []
        for index, (receiver_backend, sender_backend) in enumerate(pairs):
            sender, receiver = f"s{index}", f"r{index}"
            lab.add_segment_host(sender, f"203.0.113.{20 + index}")
            lab.add_segment_host(receiver, f"203.0.113.{10 + index}")
            lab.exec(sender, ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
                              "rate", RATE, "burst", "32kbit", "latency", "400ms"])  # fmt: skip
            code = f"{900 + index}-lab-move{os.getpid()}"
            out = tmp_path / f"out{index}"
            errors = tmp_path / f"{index}.err"
            send_errors = files.enter_context((tmp_path / f"send{index}.err").open("wb"))
            send = lab.spawn(sender, [sys.executable, "-m", "peerpy.cli", "send",
                                      str(tmp_path / "photos"), "--code", code, "--server",
                                      SERVER], env=stream_env(sender_backend),
                             stdout=subprocess.DEVNULL,
                             stderr=send_errors)  # fmt: skip
            time.sleep(1.0)  # the sender registers before the receiver looks for it
            recv = lab.spawn(receiver, [sys.executable, "-m", "peerpy.cli", "receive", code,
                                        "--yes", "-o", str(out), "--server", SERVER],
                             env=stream_env(receiver_backend), stdout=subprocess.DEVNULL,
                             stderr=files.enter_context(errors.open("wb")))  # fmt: skip
            runs.append((index, send, recv, out))
        # Each pair's address changes as soon as it received BEFORE bytes: the pairs
        # start one after the other (a loaded machine may start one seconds later), and
        # a pair waiting for the last would finish before its change.
        host, last = ("s", 20) if changed == "sender" else ("r", 10)
        changed_at: dict[int, float] = {}
        deadline = time.monotonic() + 40
        while len(changed_at) < len(runs):
            for index, _, _, out in runs:
                if index not in changed_at and received_bytes(out) >= BEFORE:
                    change_address(lab, f"{host}{index}", f"203.0.113.{last + index}",
                                   f"203.0.113.{last + 30 + index}")  # fmt: skip
                    changed_at[index] = time.monotonic()
            if time.monotonic() > deadline:
                waiting = [index for index, *_ in runs if index not in changed_at]
                logs = "".join(
                    f"--- {side} {index}\n{(tmp_path / f'{prefix}{index}.err').read_text()}\n"
                    for index in waiting
                    for side, prefix in (("send", "send"), ("receive", ""))
                )
                raise AssertionError(f"pairs {waiting}: no {BEFORE} bytes in 40 s\n{logs}")
            time.sleep(0.02)
        failures = []
        for index, send, recv, out in runs:
            pair = pairs[index]
            codes = (recv.wait(60), send.wait(30))
            send_err = (tmp_path / f"send{index}.err").read_text(errors="replace")
            recv_err = (tmp_path / f"{index}.err").read_text(errors="replace")
            got = {
                rel: hashlib.sha256((out / "photos" / rel).read_bytes()).hexdigest()
                for rel in digests
                if (out / "photos" / rel).exists()
            }
            both = send_err + recv_err
            summary = f"{pair}: exit {codes}\n--- send\n{send_err}\n--- receive\n{recv_err}"
            print(f"{pair}: done {time.monotonic() - changed_at[index]:.1f} s after the change")
            if (
                codes != (0, 0)
                or got != digests
                or "resumed: " not in both
                or "sent nothing for" in both
                or "reconnecting to resume" in both
            ):
                failures.append(summary)
        assert not failures, "\n".join(failures)
