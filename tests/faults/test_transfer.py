"""Faults of ``peerpy send``/``peerpy receive`` as real processes.

Signals (SIGINT, SIGTERM, SIGKILL, SIGSTOP) hit the sender or the receiver
mid-transfer; hostile peers connect to a sender knowing only its nameplate
(hostile offers at a receiver: tests/integration/peerpy/transfer/test_receiver.py).
The processes are real ``python -m peerpy.cli`` children, meeting on our broker
on 127.0.0.1, stopped by PID.

The signal and stranger cases run on both backends (``peer_backend``: the
children inherit ``PEERPY_BACKEND``; ``peerpy send`` picks wrtc when installed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from peerpy_protocol.ids import random_token

from peerpy.config import Timeouts
from peerpy.peer import Peer
from peerpy.transfer import TransferOptions
from peerpy.transfer.files import PARTIAL_SUFFIX
from peerpy.transfer.protocol import PROTOCOL

from ..helpers.brokers import threaded_peerpy_server, wait_registered

MiB = 1024 * 1024
FAST = TransferOptions(idle_timeout=5)


@pytest.fixture
def broker() -> Iterator[str]:
    """Our broker (discovery on) on its own event loop thread."""
    with threaded_peerpy_server() as url:
        yield url


class Proc:
    """A ``python -m peerpy.cli`` child with its stderr in a file."""

    def __init__(self, tmp: Path, tag: str, argv: list[str]) -> None:
        self.tag = tag
        self.err_path = tmp / f"{tag}.err"
        with self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "peerpy.cli", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> float:
        """Wait until stderr contains ``text``; return when (monotonic)."""
        deadline = time.monotonic() + timeout
        while text not in self.err():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.tag} never printed {text!r}; stderr:\n{self.err()}")
            time.sleep(0.02)
        return time.monotonic()

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.tag} still runs; stderr:\n{self.err()}") from None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        """SIGKILL if still running (works on a SIGSTOPped process too), and reap."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def peak_rss(self) -> int:
        """VmHWM of the running process, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Children started by a test; every one still running is killed at the end."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop()


def send(procs: list[Proc], tmp: Path, tag: str, url: str, path: Path, code: str) -> Proc:
    proc = Proc(tmp, tag, ["send", str(path), "--code", code, "--server", url])
    procs.append(proc)
    wait_registered(url, f"peerpy-xfer-{code.split('-')[0]}")
    return proc


def receive(procs: list[Proc], tmp: Path, tag: str, url: str, code: str, out: Path) -> Proc:
    proc = Proc(tmp, tag, ["receive", code, "--yes", "-o", str(out), "--server", url])
    procs.append(proc)
    return proc


def wait_partial(partial: Path, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not partial.exists() or partial.stat().st_size < size:
        if time.monotonic() > deadline:
            raise AssertionError(f"{partial} never reached {size} bytes")
        time.sleep(0.005)


def assert_prefix(partial: Path, source: bytes) -> int:
    """The partial file is a prefix of the source; return its length."""
    data = partial.read_bytes()
    assert data == source[: len(data)], "the partial file is not a prefix of the source"
    return len(data)


def nameplate() -> int:
    return int.from_bytes(os.urandom(3), "big") + 1000


# (partial size that triggers the signal, which side, signal)
INTERRUPTIONS = [
    (MiB * 3 // 2, "sender", signal.SIGINT),
    (MiB * 3, "receiver", signal.SIGINT),
    (MiB * 9 // 2, "sender", signal.SIGTERM),
    (MiB * 6, "receiver", signal.SIGTERM),
    (MiB * 15 // 2, "sender", signal.SIGKILL),
    (MiB * 9, "receiver", signal.SIGKILL),
    (MiB * 21 // 2, "sender", signal.SIGSTOP),
    (MiB * 12, "receiver", signal.SIGSTOP),
]
#: On wrtc, each signal once, on alternate sides (the signal handling above the
#: data channel is the same code; what differs is how the channel dies).
WRTC_INTERRUPTIONS = [INTERRUPTIONS[i] for i in (0, 3, 4, 7)]


@pytest.mark.timeout(300)
def test_interrupted_transfers_keep_a_prefix_and_resume(
    broker: str, tmp_path: Path, procs: list[Proc], peer_backend: str
) -> None:
    """Signals on either side at eight points (four on wrtc): the partial is always a
    prefix, the other side hears a deliberate stop within 2 s and a dead or frozen
    one within 5 s, both say how to resume, and each rerun resumes; the last one
    completes."""
    # wrtc moves ~5x as fast: a 4x file keeps every signal well before the end.
    scale = 4 if peer_backend == "wrtc" else 1
    interruptions = WRTC_INTERRUPTIONS if peer_backend == "wrtc" else INTERRUPTIONS
    source = os.urandom(16 * MiB * scale)
    path = tmp_path / "big.bin"
    path.write_bytes(source)
    out = tmp_path / "out"
    partial = out / ("big.bin" + PARTIAL_SUFFIX)
    base = nameplate()
    kept = 0
    timings: list[tuple[str, str, float]] = []
    for step, (size, side, signum) in enumerate(interruptions):
        code = f"{base + step}-fault-run"
        sender = send(procs, tmp_path, f"send{step}", broker, path, code)
        receiver = receive(procs, tmp_path, f"recv{step}", broker, code, out)
        if kept:
            receiver.wait_for("resuming at", 30)
            sender.wait_for("resuming at", 30)
        wait_partial(partial, size * scale)
        victim, other = (sender, receiver) if side == "sender" else (receiver, sender)
        victim.signal(signum)
        hit = time.monotonic()
        name = signal.Signals(signum).name
        if signum in (signal.SIGINT, signal.SIGTERM):
            # A deliberate stop: the other side hears it at once; both say how to resume.
            seen = other.wait_for("stopped: it was interrupted", 10)
            timings.append((side, name, seen - hit))
            assert seen - hit <= 2.0, f"the stop took {seen - hit:.2f} s to be reported"
            assert victim.wait(15) == 128 + signum
            assert f"interrupted ({name})" in victim.err()
            assert other.wait(15) == 1
            for proc in (victim, other):
                assert "to resume" in proc.err(), proc.err()
        else:
            # Killed or frozen: the other side notices the silence.
            seen = other.wait_for("sent nothing for", 10)
            timings.append((side, name, seen - hit))
            assert seen - hit <= 5.0, f"the silence took {seen - hit:.2f} s to be reported"
            victim.stop()
            other.stop()
        kept_now = assert_prefix(partial, source)
        assert kept_now >= kept
        kept = kept_now
    print("report delays:", [(side, name, round(t, 2)) for side, name, t in timings])

    code = f"{base + len(interruptions)}-fault-done"
    sender = send(procs, tmp_path, "send-last", broker, path, code)
    receiver = receive(procs, tmp_path, "recv-last", broker, code, out)
    assert receiver.wait(120) == 0, receiver.err()
    assert sender.wait(30) == 0, sender.err()
    assert "resuming at" in receiver.err()
    assert "resumed" in receiver.err()
    assert f"backend: {peer_backend} " in receiver.err()
    assert (
        hashlib.sha256((out / "big.bin").read_bytes()).digest() == hashlib.sha256(source).digest()
    )
    assert not partial.exists()


@pytest.mark.timeout(120)
def test_receiver_rerun_rejoins_a_waiting_sender(
    broker: str, tmp_path: Path, procs: list[Proc], peer_backend: str
) -> None:
    """A receiver killed mid-transfer and run again with the same code resumes the
    same send (the sender waits for it), and the file arrives whole."""
    source = os.urandom(8 * MiB)
    path = tmp_path / "f.bin"
    path.write_bytes(source)
    out = tmp_path / "out"
    code = f"{nameplate()}-rejoin-me"
    sender = send(procs, tmp_path, "send", broker, path, code)
    first = receive(procs, tmp_path, "recv1", broker, code, out)
    wait_partial(out / ("f.bin" + PARTIAL_SUFFIX), 2 * MiB)
    first.signal(signal.SIGKILL)
    first.stop()
    sender.wait_for(f"peerpy receive {code}` again", 10)
    assert_prefix(out / ("f.bin" + PARTIAL_SUFFIX), source)
    second = receive(procs, tmp_path, "recv2", broker, code, out)
    assert second.wait(60) == 0, f"receiver: {second.err()}\nsender: {sender.err()}"
    assert sender.wait(30) == 0, sender.err()
    assert "resuming at" in second.err()
    assert f"backend: {peer_backend} " in second.err()
    assert (out / "f.bin").read_bytes() == source


# -- strangers before the code is checked ---------------------------------------------


async def _bomb(url: str, target: str, serialization: str, megabytes: int) -> str:
    """Connect to ``target`` knowing only its id and push ``megabytes`` before any proof."""
    # A stranger that speaks no resumption (the envelope layer would refuse its frames
    # first): the transfer's own pre-proof bound is what must hold.
    async with Peer(
        "attacker" + random_token(), server=url, timeouts=Timeouts(resume=None)
    ) as peer:
        conn = await peer.connect(
            target, serialization=serialization, reliable=True, metadata={"protocol": PROTOCOL}
        )
        channel = conn.data_channel
        assert channel is not None
        if serialization == "MsgPack":
            # The decoder bomb of the issue: nested empty arrays, 16 bytes per item.
            items = megabytes * MiB // 16
            data = b"\xdd" + items.to_bytes(4, "big") + (b"\x9f" + b"\x90" * 15) * items
            frame = 32768
        else:
            data = b"M" + b"\x90" * (megabytes * MiB)
            frame = 65536
        sent = 0
        with anyio.move_on_after(20):
            for i in range(0, len(data), frame):
                while channel.bufferedAmount > 4 * MiB and channel.readyState == "open":  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                if conn.closed or channel.readyState != "open":
                    return f"closed after {sent} bytes"
                channel.send(data[i : i + frame])
                sent += frame
            with anyio.move_on_after(5):
                await conn.wait_closed()
        return "closed" if conn.closed else "still open"


def test_stranger_in_another_serialization_is_ignored(
    broker: str, tmp_path: Path, procs: list[Proc], peer_backend: str
) -> None:
    """The issue's bomb (16 MiB of nested empty arrays over MsgPack) at `peerpy send`
    before the code is checked: the sender's peak RSS grows by less than 100 MB
    (1.35 GB before), the connection is dropped, and the real receiver completes."""
    path = tmp_path / "f.bin"
    payload = os.urandom(100_000)
    path.write_bytes(payload)
    code = f"{nameplate()}-bomb-test"
    sender = send(procs, tmp_path, "send", broker, path, code)
    time.sleep(0.5)
    before = sender.peak_rss()
    outcome = anyio.run(_bomb, broker, f"peerpy-xfer-{code.split('-')[0]}", "MsgPack", 16)
    assert "closed" in outcome
    grown = sender.peak_rss() - before
    assert grown < 100 * 1024 * 1024, f"the sender grew by {grown / MiB:.0f} MiB"
    out = tmp_path / "out"
    receiver = receive(procs, tmp_path, "recv", broker, code, out)
    assert receiver.wait(60) == 0, receiver.err()
    assert sender.wait(30) == 0, sender.err()
    assert (out / "f.bin").read_bytes() == payload
    assert f"backend: {peer_backend} " in receiver.err()
    print(f"sender peak RSS grew by {grown / MiB:.1f} MiB under the MsgPack bomb")


def test_stranger_peak_rss_while_sending_frames(
    broker: str, tmp_path: Path, procs: list[Proc], peer_backend: str
) -> None:
    """A stranger speaking the transfer protocol streams 16 MiB of 64 KiB frames before
    the code is checked: the sender stays under +100 MB and ends the send with a
    clear message (one attempt per code, as for a wrong code)."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    code = f"{nameplate()}-bomb-rss"
    sender = send(procs, tmp_path, "send", broker, path, code)
    time.sleep(0.5)
    before = sender.peak_rss()
    peaks: list[int] = []

    async def watch_and_bomb() -> str:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with contextlib.suppress(OSError, AssertionError):
                    while sender.process.poll() is None:
                        peaks.append(sender.peak_rss())
                        await anyio.sleep(0.05)

            tg.start_soon(watch)
            result = await _bomb(broker, f"peerpy-xfer-{code.split('-')[0]}", "raw", 16)
            tg.cancel_scope.cancel()
        return result

    outcome = anyio.run(watch_and_bomb)
    assert "closed" in outcome
    assert sender.wait(30) == 1
    assert peaks
    assert max(peaks) - before < 100 * 1024 * 1024
    assert "before proving it knows the code" in sender.err(), sender.err()
    print(f"sender peak RSS grew by {(max(peaks) - before) / MiB:.1f} MiB; {outcome}")
