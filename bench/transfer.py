"""Benchmark: ``peerpy send``/``receive`` against raw DataConnection bytes.

Runs our broker in this process on 127.0.0.1, then, each in two child
processes (sender and receiver):

* ``cli``: ``python -m peerpy.cli send FILE`` / ``receive CODE --yes``,
  the whole transfer path (auth, manifest, SHA-256, disk I/O, acks);
* ``dc``: a Peer pair sending the same number of bytes as 16 KiB ``bytes``
  values over a reliable ``raw`` DataConnection, nothing else: the shape of
  case (g) of bench/throughput.py (the fastest DataConnection path, and the
  serialization the CLI itself uses).

It prints MB/s of each (from the first to the last byte, as each receiver
reports it, and wall time including process start), the peak RSS of every
process (``wait4`` rusage), and the ratios.  ICE is restricted to 127.0.0.1
and no ICE server is used.  ``--profile DIR`` runs the children under
cProfile and writes one ``.prof`` per process.

    python bench/transfer.py                 # 256 MB
    python bench/transfer.py --size 64MiB --profile /tmp/prof
    PEERPY_BACKEND=aiortc python bench/transfer.py   # both paths on aiortc

Both paths use the same backend: ``--backend``, else ``PEERPY_BACKEND``,
else the fastest installed (wrtc when installed), on uvloop unless
``PEERPY_UVLOOP=0``.  The backend is passed to every child explicitly,
because ``auto`` keeps aiortc under the loopback-only address policy used
here.  On wrtc run it inside a network namespace (libwebrtc gathers on every
interface): ``unshare -n bash -c 'ip link set lo up && python bench/transfer.py'``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from anyio.from_thread import start_blocking_portal

CHUNK = 16 * 1024  # as bench/throughput.py's cases (c) and (g)
TARGET = 0.8  # peerpy send/receive against the bare DataConnection (issue 11)
LOOPBACK = ["--ice-addresses", "127.0.0.1", "--ice-servers", ""]


# -- child processes: the raw DataConnection baseline ---------------------------------


async def raw_send(url: str, peer_id: str, size: int) -> None:
    """Register ``peer_id``, accept one connection, send ``size`` bytes, wait for the ack."""
    from peerpy import Peer

    async with Peer(peer_id, server=url, ice_addresses=["127.0.0.1"], ice_servers=[]) as peer:
        conn = await peer.accept()
        block = os.urandom(CHUNK)
        sent = 0
        while sent < size:
            piece = block[: min(CHUNK, size - sent)]
            await conn.send(piece)
            sent += len(piece)
        await conn.recv()  # the receiver's "got it all"
        await conn.close()


async def raw_receive(url: str, peer_id: str, size: int) -> None:
    """Connect to ``peer_id``, count ``size`` bytes, print the rate as JSON."""
    from peerpy import Peer

    async with Peer(server=url, ice_addresses=["127.0.0.1"], ice_servers=[]) as peer:
        conn = await peer.connect(peer_id, serialization="raw", reliable=True)
        got = 0
        start = 0.0
        while got < size:
            data = await conn.recv()
            if not got:
                start = time.perf_counter()
            got += len(data)
        seconds = time.perf_counter() - start
        await conn.send(b"ok")
        print(json.dumps({"bytes": got, "seconds": seconds}), flush=True)
        await conn.close(flush=True)


# -- the parent ------------------------------------------------------------------------


def spawn(args: list[str], profile: Path | None, name: str, **kw: Any) -> subprocess.Popen[bytes]:
    """Start a child Python (under cProfile when profiling)."""
    prefix = [sys.executable]
    if profile is not None:
        prefix += ["-m", "cProfile", "-o", str(profile / f"{name}.prof")]
    return subprocess.Popen([*prefix, *args], **kw)


def reap(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for a child; return its peak RSS in MiB (from wait4's rusage)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode:
                raise SystemExit(f"child {process.args} failed with {process.returncode}")
            return usage.ru_maxrss // 1024
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"child {process.args} timed out")
        time.sleep(0.05)


def wait_registered(url: str, peer_id: str) -> None:
    for _ in range(400):
        with urllib.request.urlopen(url + "peerjs/peers", timeout=2) as response:
            if peer_id in json.loads(response.read()):
                return
        time.sleep(0.05)
    raise SystemExit(f"{peer_id} never registered")


def run_pair(
    url: str, send: list[str], receive: list[str], peer_id: str, profile: Path | None, tag: str
) -> dict[str, Any]:
    sender = spawn(send, profile, f"{tag}-sender", stdout=subprocess.DEVNULL)
    try:
        wait_registered(url, peer_id)
        started = time.perf_counter()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            receiver = spawn(receive, profile, f"{tag}-receiver", stdout=out, stderr=err)
            try:
                receiver_rss = reap(receiver, 1800)
            finally:
                out.seek(0)
                err.seek(0)
                text, errors = out.read().decode(), err.read().decode()
                if receiver.returncode:
                    print(errors[-2000:], file=sys.stderr)
            wall = time.perf_counter() - started
        sender_rss = reap(sender, 60)
    except BaseException:
        sender.kill()
        raise
    return {
        "wall": wall,
        "out": text,
        "err": errors,
        "sender_rss": sender_rss,
        "receiver_rss": receiver_rss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MB", help="bytes to move (default 256MB)")
    parser.add_argument("--profile", type=Path, help="write cProfile output of each process here")
    parser.add_argument(
        "--backend",
        choices=("aiortc", "wrtc"),
        help="WebRTC backend of both paths (default: PEERPY_BACKEND, else the fastest installed)",
    )
    args = parser.parse_args()
    from peerpy.backend import fastest_backend, resolve_backend, use_uvloop

    engine = args.backend or resolve_backend()
    if engine == "auto":
        engine = fastest_backend()
    os.environ["PEERPY_BACKEND"] = engine  # the children inherit it
    from peerpy.cli.progress import parse_size

    size = parse_size(args.size)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    from peerpy_server import Broker, BrokerConfig

    config = BrokerConfig(host="127.0.0.1", port=0, path="/", allow_discovery=True)
    with (
        tempfile.TemporaryDirectory(prefix="peerpy-bench-") as tmp,
        start_blocking_portal() as portal,
    ):
        source = Path(tmp) / "payload.bin"
        with source.open("wb") as f:
            for left in range(size, 0, -(1 << 20)):
                f.write(os.urandom(min(1 << 20, left)))
        with portal.wrap_async_context_manager(Broker(config)) as broker:
            url = broker.url
            nameplate = int.from_bytes(os.urandom(3), "big") + 1000
            code = f"{nameplate}-bench-run"
            cli = run_pair(
                url,
                ["-m", "peerpy.cli", "send", str(source), "--code", code,
                 "--server", url, *LOOPBACK],
                ["-m", "peerpy.cli", "receive", code, "--yes", "-o", str(Path(tmp) / "out"),
                 "--server", url, *LOOPBACK],
                f"peerpy-xfer-{nameplate}",
                args.profile,
                "cli",
            )  # fmt: skip
            received = Path(tmp) / "out" / "payload.bin"
            assert received.stat().st_size == size, "the CLI transfer is incomplete"
            received.unlink()
            raw_id = f"rawbench{nameplate}"
            me = str(Path(__file__).resolve())
            raw = run_pair(
                url,
                [me, "raw-send", url, raw_id, str(size)],
                [me, "raw-receive", url, raw_id, str(size)],
                raw_id,
                args.profile,
                "raw",
            )
    raw_stats = json.loads(raw["out"].strip().splitlines()[-1])
    raw_rate = raw_stats["bytes"] / raw_stats["seconds"] / 1e6
    cli_wall_rate = size / cli["wall"] / 1e6
    raw_wall_rate = size / raw["wall"] / 1e6
    seconds = re.search(r"in ([0-9.]+) s", cli["err"])
    cli_rate = size / float(seconds.group(1)) / 1e6 if seconds else float("nan")
    loop = "uvloop" if use_uvloop() else "asyncio"
    print(f"payload: {size / 1e6:.0f} MB, loopback, {os.cpu_count()} CPUs, load {_loadavg()}")
    print(f"backend: {engine} on {loop} (--backend/PEERPY_BACKEND, PEERPY_UVLOOP)")
    print("cli: peerpy send/receive; dc: raw DataConnection, 16 KiB bytes (throughput case g)")
    print(
        f"{'path':<6}{'MB/s (wall)':>14}{'MB/s (stream)':>16}{'sender RSS':>13}{'receiver RSS':>15}"
    )
    print(f"{'dc':<6}{raw_wall_rate:>14.1f}{raw_rate:>16.1f}"
          f"{raw['sender_rss']:>10} MiB{raw['receiver_rss']:>12} MiB")  # fmt: skip
    print(f"{'cli':<6}{cli_wall_rate:>14.1f}{cli_rate:>16.1f}"
          f"{cli['sender_rss']:>10} MiB{cli['receiver_rss']:>12} MiB")  # fmt: skip
    print(f"cli/dc throughput: wall {cli_wall_rate / raw_wall_rate:.2f}, "
          f"stream {cli_rate / raw_rate:.2f}")  # fmt: skip
    print(f"cli/dc peak RSS: sender {cli['sender_rss'] / raw['sender_rss']:.2f}, "
          f"receiver {cli['receiver_rss'] / raw['receiver_rss']:.2f}")  # fmt: skip
    ratio = cli_wall_rate / raw_wall_rate
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"target: cli >= {TARGET} x dc (wall): {ratio:.2f} {verdict}")
    return 0 if ratio >= TARGET else 1


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in ("raw-send", "raw-receive"):
        func = raw_send if sys.argv[1] == "raw-send" else raw_receive
        from peerpy.backend import run

        run(func, sys.argv[2], sys.argv[3], int(sys.argv[4]))  # on uvloop, as the CLI
    else:
        sys.exit(main())
