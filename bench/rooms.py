"""Rooms: N members as N processes, meshed through our broker, broadcasting to each other.

Run ``python bench/rooms.py`` (``--sizes 4,8,16`` by default; ``--quick`` for 4
and 8 with short phases).  For each room size N it:

1. starts our broker (``python -m peerpy_server``) as a process of its own, and
   N member processes, each a :class:`peerpy.Peer` registered and waiting;
2. tells every member to join the room at once and measures, from that
   instant, each member's join (``ROOM-MEMBERS`` back) and the moment the last
   of the N (N - 1) / 2 data connections of the mesh is open at both ends:
   the *mesh time*; the broker's CPU time (``/proc/PID/task/*/schedstat``,
   all threads, in ns) over the same window, divided by N, is its CPU per
   member-join (the join itself plus relaying the mesh's OFFERs and ANSWERs);
3. makes every member broadcast ``--rate`` messages per second (10) for
   ``--seconds`` (10) to the room; each message carries its send time
   (``time.monotonic_ns``, system-wide on Linux) and each receiver records
   ``now - sent``: the fan-out's delivered messages per second and p50/p99
   latency (one warm-up second left out), and each member's CPU use while it
   broadcasts (% of one core);
4. stops every process by PID.

It prints one table row per size with the machine's load average (1 min) before
and after, and the number of cores: the machine may be shared.  Members use the
backend ``PEERPY_BACKEND`` (or ``--backend``) names; ICE runs on 127.0.0.1 with
no ICE server.  Every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROOM = "bench"


# -- a member (a process of its own) -------------------------------------------------------


async def member(args: argparse.Namespace) -> None:
    """One member: register, then follow the coordinator's commands on stdin."""
    import anyio

    from peerpy import Peer

    async def line() -> str:
        text = await anyio.to_thread.run_sync(sys.stdin.readline)
        return text.strip()

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    others = args.count - 1
    latencies: list[int] = []
    window: list[int] = [0, 0]  # record only what was sent within [start, end] ns

    def received(sender: str, value: Any) -> None:
        now = time.monotonic_ns()
        if window[0] <= value["t"] <= window[1]:
            latencies.append(now - value["t"])

    async with Peer(args.member, server=args.server) as peer:
        say(ready=True, backend=peer.backend)
        assert await line() == "join"
        started = time.monotonic()
        async with peer.join(ROOM) as room:
            joined = time.monotonic()
            room.on("data", received)
            while len(room.connections) < others:  # noqa: ASYNC110 - a benchmark's poll
                await anyio.sleep(0.005)
            say(join_at=started, joined=joined - started, meshed_at=time.monotonic())
            command = await line()  # "go <start, monotonic> <seconds> <rate>"
            _, at, seconds, rate = command.split()
            start, length, period = float(at), float(seconds), 1 / float(rate)
            window[0] = int((start + 1.0) * 1e9)  # one warm-up second
            window[1] = int((start + length) * 1e9)
            await anyio.sleep(max(0.0, start - time.monotonic()))
            cpu = time.process_time()
            sent, seq = 0, 0
            while (now := time.monotonic()) < start + length:
                await room.send({"t": time.monotonic_ns(), "s": seq})
                seq += 1
                if window[0] <= now * 1e9 <= window[1]:
                    sent += 1
                await anyio.sleep(max(0.0, start + seq * period - time.monotonic()))
            cpu = (time.process_time() - cpu) / (time.monotonic() - start)
            await anyio.sleep(2.0)  # let the last ones arrive
            say(sent=sent, latencies=latencies, cpu=cpu)
            await line()  # "leave"


# -- the coordinator -----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, all its threads, in seconds (``schedstat``: ns resolution)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by the benchmark, each stopped by its PID on the way out."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in reversed(started):  # members first, the broker last
            if process.poll() is None:
                process.kill()
            process.wait(10)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


def read(process: subprocess.Popen[str], deadline: float) -> dict[str, Any]:
    """The next JSON line from a member (before ``deadline``, monotonic)."""
    assert process.stdout is not None
    import select

    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
            raise TimeoutError("a member did not answer in time")
        text = process.stdout.readline()
        if not text:
            raise RuntimeError(f"member {process.pid} ended (status {process.wait()})")
        if text.startswith("{"):
            return dict(json.loads(text))


def tell(process: subprocess.Popen[str], command: str) -> None:
    assert process.stdin is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_size(count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one room of ``count`` members; return its figures."""
    env = {
        **os.environ,
        "PEERPY_ICE_SERVERS": "",
        "PEERPY_ICE_ADDRESSES": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join(
            [
                str(ROOT),
                str(ROOT / "protocol"),
                str(ROOT / "server"),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    }
    if args.backend:
        env["PEERPY_BACKEND"] = args.backend
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with processes() as started:
        broker = subprocess.Popen(
            [sys.executable, "-m", "peerpy_server", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, text=True,
        )  # fmt: skip
        started.append(broker)
        members = []
        for n in range(count):
            member_id = f"m{n:03d}"
            process = subprocess.Popen(
                [sys.executable, __file__, "--member", member_id, "--server", url,
                 "--count", str(count)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
            )  # fmt: skip
            started.append(process)
            members.append(process)
        deadline = time.monotonic() + 60 + 5 * count
        backends = {read(p, deadline)["backend"] for p in members}
        load_before = os.getloadavg()[0]
        time.sleep(1.0)  # let the imports' CPU settle
        cpu_before = cpu_seconds(broker.pid)
        for process in members:
            tell(process, "join")
        deadline = time.monotonic() + 120
        meshed = [read(p, deadline) for p in members]
        cpu_join = cpu_seconds(broker.pid) - cpu_before
        first = min(m["join_at"] for m in meshed)
        mesh_time = max(m["meshed_at"] for m in meshed) - first
        joined = [m["joined"] for m in meshed]
        start = time.monotonic() + 1.0
        for process in members:
            tell(process, f"go {start} {args.seconds} {args.rate}")
        deadline = start + args.seconds + 60
        reports = [read(p, deadline) for p in members]
        for process in members:
            tell(process, "leave")
        load_after = os.getloadavg()[0]
    latencies_ms = [ns / 1e6 for r in reports for ns in r["latencies"]]
    sent = sum(r["sent"] for r in reports)
    measured = args.seconds - 1.0
    return {
        "members": count,
        "backend": ",".join(sorted(backends)),
        "join_p50_ms": statistics.median(joined) * 1000,
        "mesh_s": mesh_time,
        "broker_cpu_ms_per_join": cpu_join / count * 1000,
        "delivered_per_s": len(latencies_ms) / measured,
        "expected_per_s": sent * (count - 1) / measured,
        "p50_ms": percentile(latencies_ms, 0.50),
        "p99_ms": percentile(latencies_ms, 0.99),
        "member_cpu": statistics.mean(r["cpu"] for r in reports),
        "load": (load_before, load_after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4,8,16", help="room sizes (default 4,8,16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="broadcast phase (10 s)")
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s per member (10)")
    parser.add_argument("--backend", help="aiortc or wrtc (default: PEERPY_BACKEND, else auto)")
    parser.add_argument("--quick", action="store_true", help="sizes 4 and 8, 4 s phases")
    parser.add_argument("--member", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.member:
        import anyio

        anyio.run(member, args)
        return
    if args.quick:
        args.sizes, args.seconds = "4,8", 4.0
    print(f"rooms benchmark on {os.cpu_count()} cores; load average (1 min) before/after each")
    print(
        "| members | backend | join p50 | mesh open | broker CPU/join | delivered/s (expected) "
        "| p50 | p99 | member CPU | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        r = run_size(size, args)
        print(
            f"| {r['members']} | {r['backend']} | {r['join_p50_ms']:.0f} ms | {r['mesh_s']:.2f} s "
            f"| {r['broker_cpu_ms_per_join']:.1f} ms | {r['delivered_per_s']:.0f} "
            f"({r['expected_per_s']:.0f}) | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms "
            f"| {r['member_cpu']:.0%} | {r['load'][0]:.2f} / {r['load'][1]:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
