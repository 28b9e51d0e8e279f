"""The broker under abuse: the figures of docs/broker.md ("Limits"), on 127.0.0.1.

Run inside a loopback-only namespace, for example
``unshare -n bash -c 'ip link set lo up && python bench/broker_abuse.py all'``.
Each scenario starts ``peerpy-server`` as a child process (stopped by PID) and
is bounded in count and time:

* ``sweep N...``: one ``Realm.sweep`` over N queues expiring at once (queue caps
  off), and the longest of the 1000-entry slices the broker actually runs;
* ``freeze N [--uncapped]``: one client sends tiny OFFERs to N distinct offline
  ids (``expire_timeout`` 5 s); two other clients relay a message every 100 ms
  for 15 s; prints the worst round trip, the broker's peak RSS and whether it
  exits within 15 s of SIGTERM.  ``--uncapped`` turns the queue caps and the
  rate limit off, leaving only the 64 MiB queue budget;
* ``logamp``: 100 000 OFFERs to one offline id; how much the log grows;
* ``halfopen N``: N TCP connections from 127.0.0.2 that never send a byte,
  then how long a normal client takes to register and relay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.brokers import ROOT, free_port
from tests.helpers.flood import masked, raw_client

UNCAPPED = ["--max-queues", "0", "--max-queues-per-sender", "0", "--rate-limit", "0"]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


@contextlib.contextmanager
def broker(*flags: str, log: Path | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``peerpy-server`` on a free port; SIGTERM at the end (SIGKILL after 15 s, reported)."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "server"), str(ROOT / "protocol"), env.get("PYTHONPATH", "")]
    )
    argv = [sys.executable, "-m", "peerpy_server.cli", "--host", "127.0.0.1", "--port", str(port)]
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen([*argv, *flags], env=env, stdout=out, stderr=out)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield proc, port
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
            print(f"  broker exited {time.monotonic() - started:.2f} s after SIGTERM")
        except subprocess.TimeoutExpired:
            print("  broker ignored SIGTERM for 15 s; killed")
            proc.kill()
            proc.wait()
        if log is not None and not isinstance(out, int):
            out.close()


def ws_url(port: int, peer_id: str) -> str:
    return f"ws://127.0.0.1:{port}/peerjs?key=peerjs&id={peer_id}&token=t"


def sweep(sizes: list[int]) -> None:
    from peerpy_server.config import BrokerConfig
    from peerpy_server.core.realm import Realm

    logging.disable(logging.CRITICAL)

    class Link:
        def send(self, frame: str) -> bool:
            return True

        def close(self, code: int | None = None, reason: str = "") -> None:
            pass

    for n in sizes:
        slices = []
        for limit in (None, 1000):
            realm = Realm(
                BrokerConfig(
                    port=0, max_queues=None, max_queues_per_sender=None, max_queued_bytes=1 << 40
                )
            )
            client = realm.connect(Link(), key="peerjs", peer_id="flooder", token="t", now=0.0)
            assert client is not None
            for i in range(n):
                realm.receive(client, b'{"type":"OFFER","dst":"g%d","payload":1}' % i, 0.0)
            more = True
            while more:
                start = time.perf_counter()
                more = realm.sweep(10.0, limit)
                slices.append(time.perf_counter() - start)
            if limit is None:
                whole, slices = slices[0], []
        print(
            f"N={n}: one sweep() {whole:.3f} s; in 1000-entry slices: {len(slices)} slices,"
            f" longest {max(slices) * 1000:.1f} ms"
        )


async def freeze(n: int, uncapped: bool) -> None:
    flags = UNCAPPED if uncapped else []
    with broker(*flags, "--log-level", "WARNING") as (proc, port):
        async with (
            connect(ws_url(port, "watchA")) as a,
            connect(ws_url(port, "watchB")) as b,
            raw_client(port, "flooder") as sock,
        ):
            await a.recv()
            await b.recv()
            base = rss_kib(proc.pid)
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            with contextlib.suppress(OSError):
                for first in range(0, n, 10_000):
                    chunk = b"".join(
                        masked(b'{"type":"OFFER","dst":"g%d","payload":1}' % i)
                        for i in range(first, min(n, first + 10_000))
                    )
                    await asyncio.wait_for(loop.sock_sendall(sock, chunk), 60)
            print(f"  sent {n} OFFERs in {time.monotonic() - started:.2f} s (base RSS {base} KiB)")
            worst, worst_at, peak, trips = 0.0, 0.0, base, []
            while time.monotonic() - started < 15:
                sent = time.monotonic()
                await a.send(json.dumps({"type": "CANDIDATE", "dst": "watchB", "payload": sent}))
                await asyncio.wait_for(b.recv(), 60)
                trip = time.monotonic() - sent
                trips.append(trip)
                if trip > worst:
                    worst, worst_at = trip, sent - started
                peak = max(peak, rss_kib(proc.pid))
                await asyncio.sleep(0.1)
        trips.sort()
        print(
            f"  worst relay round trip {worst * 1000:.1f} ms at t={worst_at:.1f} s,"
            f" p99 {trips[int(len(trips) * 0.99)] * 1000:.1f} ms; peak RSS {peak} KiB"
            f" (+{(peak - base) / 1024:.1f} MiB)"
        )


async def logamp() -> None:
    log = Path(tempfile.mkdtemp()) / "broker.log"
    with broker(log=log) as (_, port):
        async with raw_client(port, "flooder") as sock:
            loop = asyncio.get_running_loop()
            frame = masked(b'{"type":"OFFER","dst":"offline1","payload":1}')
            with contextlib.suppress(OSError):
                for _ in range(10):
                    await asyncio.wait_for(loop.sock_sendall(sock, frame * 10_000), 30)
            await asyncio.sleep(2)
    text = log.read_text()
    print(
        f"  sent {100_000 * len(frame) / 1e6:.1f} MB; log {len(text) / 1e3:.1f} kB,"
        f" {text.count(chr(10))} lines ({text.count('is full')} 'is full')"
    )


async def halfopen(n: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1000, n + 1000))
    with broker() as (_, port):
        socks = []
        try:
            for _ in range(n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.2", 0))
                with contextlib.suppress(OSError):
                    sock.connect(("127.0.0.1", port))
            started = time.monotonic()
            async with connect(ws_url(port, "alice")) as a, connect(ws_url(port, "bob")) as b:
                await a.recv()
                await b.recv()
                await a.send(json.dumps({"type": "OFFER", "dst": "bob", "payload": 1}))
                await asyncio.wait_for(b.recv(), 30)
            print(f"  {n} silent sockets: a client registered and relayed in"
                  f" {(time.monotonic() - started) * 1000:.0f} ms")  # fmt: skip
        finally:
            for sock in socks:
                sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["sweep", "freeze", "logamp", "halfopen", "all"])
    parser.add_argument("n", nargs="*", type=int)
    parser.add_argument("--uncapped", action="store_true")
    args = parser.parse_args()
    if args.scenario in ("sweep", "all"):
        sweep(args.n or [50_000, 100_000, 200_000])
    if args.scenario in ("freeze", "all"):
        for n in args.n or [400_000]:
            print(f"freeze N={n}{' uncapped' if args.uncapped else ''}:")
            asyncio.run(freeze(min(n, 2_000_000), args.uncapped))
    if args.scenario in ("logamp", "all"):
        print("logamp:")
        asyncio.run(logamp())
    if args.scenario in ("halfopen", "all"):
        print("halfopen:")
        asyncio.run(halfopen(min(args.n[0] if args.n else 6024, 20_000)))


if __name__ == "__main__":
    main()
