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
process and its CPU time per MB, all threads counted (``wait4`` rusage), and
the ratios.  ``--repeat N`` makes N pairs of runs (cli, then dc) and judges
the median of the paired wall ratios.  ICE is restricted to 127.0.0.1 and no
ICE server is used.  ``--profile DIR`` runs the children under cProfile and
writes one ``.prof`` per process (``DIR/<repeat>/``).

    python bench/transfer.py                 # 256 MB
    python bench/transfer.py --size 64MiB --profile /tmp/prof
    python bench/transfer.py --size 1GiB --repeat 3   # paired runs: median ratio
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
import statistics
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


def reap(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for a child; return its peak RSS in MiB and its CPU seconds (wait4's rusage).

    The CPU time counts every thread of the child (libwebrtc's native threads too).
    """
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode:
                raise SystemExit(f"child {process.args} failed with {process.returncode}")
            return usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime
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
                receiver_rss, receiver_cpu = reap(receiver, 1800)
            finally:
                out.seek(0)
                err.seek(0)
                text, errors = out.read().decode(), err.read().decode()
                if receiver.returncode:
                    print(errors[-2000:], file=sys.stderr)
            wall = time.perf_counter() - started
        sender_rss, sender_cpu = reap(sender, 60)
    except BaseException:
        sender.kill()
        raise
    return {
        "wall": wall,
        "out": text,
        "err": errors,
        "sender_rss": sender_rss,
        "receiver_rss": receiver_rss,
        "sender_cpu": sender_cpu,
        "receiver_cpu": receiver_cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MB", help="bytes to move (default 256MB)")
    parser.add_argument("--profile", type=Path, help="write cProfile output of each process here")
    parser.add_argument("--repeat", type=int, default=1, help="paired runs (cli, dc) to make")
    parser.add_argument(
        "--backend",
        choices=("aiortc", "wrtc"),
        help="WebRTC backend of both paths (default: PEERPY_BACKEND, else the fastest installed)",
    )
    args = parser.parse_args()
    from peerpy.backends import fastest_backend, resolve_backend, use_uvloop

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
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with (
        tempfile.TemporaryDirectory(prefix="peerpy-bench-") as tmp,
        start_blocking_portal() as portal,
    ):
        source = Path(tmp) / "payload.bin"
        with source.open("wb") as f:
            for left in range(size, 0, -(1 << 20)):
                f.write(os.urandom(min(1 << 20, left)))
        with portal.wrap_async_context_manager(Broker(config)) as broker:
            for repeat in range(args.repeat):  # cli then dc, back to back: one pair
                profile = args.profile / str(repeat) if args.profile else None
                if profile is not None:
                    profile.mkdir(exist_ok=True)
                rows.append(one_pair(broker.url, source, size, Path(tmp), profile))
    loop = "uvloop" if use_uvloop() else "asyncio"
    print(f"payload: {size / 1e6:.0f} MB, loopback, {os.cpu_count()} CPUs, load {_loadavg()}")
    print(f"backend: {engine} on {loop} (--backend/PEERPY_BACKEND, PEERPY_UVLOOP)")
    print("cli: peerpy send/receive; dc: raw DataConnection, 16 KiB bytes (throughput case g)")
    print("CPU: ms per MB of each process, all threads (startup and negotiation included)")
    print(
        f"{'path':<6}{'MB/s (wall)':>12}{'MB/s (stream)':>15}{'sender RSS':>12}"
        f"{'receiver RSS':>14}{'CPU send':>10}{'CPU recv':>10}"
    )
    ratios, cpu_ratios = [], []
    for cli, raw in rows:
        for name, row in (("dc", raw), ("cli", cli)):
            print(
                f"{name:<6}{row['wall_rate']:>12.1f}{row['rate']:>15.1f}"
                f"{row['sender_rss']:>8} MiB{row['receiver_rss']:>10} MiB"
                f"{row['sender_cpu'] * 1e3 / (size / 1e6):>10.1f}"
                f"{row['receiver_cpu'] * 1e3 / (size / 1e6):>10.1f}"
            )
        ratios.append(cli["wall_rate"] / raw["wall_rate"])
        cpu = (cli["sender_cpu"] + cli["receiver_cpu"]) / (raw["sender_cpu"] + raw["receiver_cpu"])
        cpu_ratios.append(cpu)
        print(
            f"cli/dc: wall {ratios[-1]:.2f}, stream {cli['rate'] / raw['rate']:.2f}, "
            f"CPU per MB {cpu:.2f}, peak RSS sender {cli['sender_rss'] / raw['sender_rss']:.2f}"
            f" receiver {cli['receiver_rss'] / raw['receiver_rss']:.2f}"
        )
    ratio = statistics.median(ratios)
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(
        f"target: cli >= {TARGET} x dc (wall, median of {len(ratios)} paired runs): "
        f"{ratio:.2f} {verdict} (CPU per MB cli/dc {statistics.median(cpu_ratios):.2f})"
    )
    return 0 if ratio >= TARGET else 1


def one_pair(
    url: str, source: Path, size: int, tmp: Path, profile: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One CLI transfer, then one raw DataConnection run of the same size."""
    nameplate = int.from_bytes(os.urandom(3), "big") + 1000
    code = f"{nameplate}-bench-run"
    cli = run_pair(
        url,
        ["-m", "peerpy.cli", "send", str(source), "--code", code,
         "--server", url, *LOOPBACK],
        ["-m", "peerpy.cli", "receive", code, "--yes", "-o", str(tmp / "out"),
         "--server", url, *LOOPBACK],
        f"peerpy-xfer-{nameplate}",
        profile,
        "cli",
    )  # fmt: skip
    received = tmp / "out" / source.name
    assert received.stat().st_size == size, "the CLI transfer is incomplete"
    received.unlink()
    seconds = re.search(r"in ([0-9.]+) s", cli["err"])
    cli["rate"] = size / float(seconds.group(1)) / 1e6 if seconds else float("nan")
    cli["wall_rate"] = size / cli["wall"] / 1e6
    raw_id = f"rawbench{nameplate}"
    me = str(Path(__file__).resolve())
    raw = run_pair(
        url,
        [me, "raw-send", url, raw_id, str(size)],
        [me, "raw-receive", url, raw_id, str(size)],
        raw_id,
        profile,
        "raw",
    )
    stats = json.loads(raw["out"].strip().splitlines()[-1])
    raw["rate"] = stats["bytes"] / stats["seconds"] / 1e6
    raw["wall_rate"] = size / raw["wall"] / 1e6
    return cli, raw


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in ("raw-send", "raw-receive"):
        func = raw_send if sys.argv[1] == "raw-send" else raw_receive
        from peerpy.backends import run

        run(func, sys.argv[2], sys.argv[3], int(sys.argv[4]))  # on uvloop, as the CLI
    else:
        sys.exit(main())
