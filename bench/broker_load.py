"""Signaling load on our broker and on ``peer`` 1.0.2, side by side, on 127.0.0.1.

Run ``python bench/broker_load.py`` (``--quick`` for 100 and 1 000 clients and
short phases).  For each broker and each client count N it:

1. starts the broker as a separate process (fd limit raised, ``--alive_timeout``
   one hour so no HEARTBEAT is needed, ``--concurrent_limit`` above N; ours with
   its per-address caps and rate limit off, since every client comes from
   127.0.0.1 and the saturated phase sends far above the default rate) and reads
   its RSS with no client;
2. connects N WebSocket clients (ids ``c0`` … ``cN-1``), waits for every
   ``OPEN``, lets the broker settle and reads its RSS again: the difference
   divided by N is the memory per idle connection;
3. *paced* phase: the clients relay ``--rate`` CANDIDATE messages per second in
   total (client i sends to client i^1), for p50/p99 latency at moderate load;
4. *saturated* phase: closed loop, every client keeps ``--inflight``/N messages
   (at least one) in flight to its partner and answers each message it gets with
   a new one; this gives the most msg/s the broker reaches here and, above all,
   the messages relayed per broker CPU-second;
5. closes the clients and stops the broker by PID (also on Ctrl-C or error).

Messages look like a browser's ICE candidate (~250-byte ``payload``) and carry
their send time (``time.monotonic_ns``, system-wide) as the last payload field;
latency is receive time minus that.  Counts, latencies and CPU times cover the
same window: the phase starts at an agreed instant, one warm-up second is
ignored, then ``--seconds`` are measured.  Broker CPU is utime+stime from
``/proc/PID/stat`` (all threads), RSS is ``VmRSS`` from ``/proc/PID/status``.

The load generator is built to be cheap: ``--workers`` processes (uvloop when
installed), each owning an even slice of the clients so pairs stay in one
process, speaking a minimal client WebSocket by hand on ``asyncio.Protocol``
(one HTTP upgrade request, unmasked server frames parsed in place, masked client
frames built from a prefix, no compression, one ``write`` per socket per read).
Its CPU is reported too: on a 2-core machine it competes with the broker, which
is why the comparison is per broker CPU-second.  Every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, cast

from websockets.speedups import apply_mask

ROOT = Path(__file__).resolve().parent.parent
PEER_BIN = ROOT / "tests/support/node_modules/peer/dist/bin/peerjs.js"
HOST = "127.0.0.1"
MIB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
WARMUP = 1.0  # seconds of each phase that are not measured
DRAIN = 1.0  # seconds after a phase for in-flight messages to arrive
MAX_LATENCIES = 2_000_000  # latency samples kept per worker and phase
CONNECT_TIMEOUT = 120.0  # seconds for all N clients to get OPEN
HANDSHAKES_IN_FLIGHT = 64  # per worker
CANDIDATE = (
    b'{"candidate":"candidate:842163049 1 udp 1677729535 192.0.2.17 54321 typ srflx '
    b'raddr 0.0.0.0 rport 0 generation 0 ufrag W2lB network-id 1 network-cost 10",'
    b'"sdpMLineIndex":0,"sdpMid":"0","usernameFragment":"W2lB"}'
)


def raise_fd_limit() -> None:
    """Raise this process's open-file limit to its hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(sorted_values: array[int], q: float) -> float:
    """The q-quantile (0..1) of sorted nanosecond values, in milliseconds."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index] / 1e6


# --- Generator side: one client ----------------------------------------------------


class Client(asyncio.Protocol):
    """One PeerJS client: minimal WebSocket handshake, then frames in and out."""

    def __init__(self, worker: Worker, index: int, request: bytes) -> None:
        self.worker = worker
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.buffer = b""
        self.mask = os.urandom(4)
        partner = index ^ 1
        self.prefix = (
            b'{"type":"CANDIDATE","dst":"c%d","payload":{"candidate":%s,'
            b'"type":"data","connectionId":"dc_%08d","t":' % (partner, CANDIDATE, index // 2)
        )

    def frame(self, now: int) -> bytes:
        """A masked text frame carrying one CANDIDATE sent at ``now``."""
        body = self.prefix + b"%d}}" % now
        return struct.pack("!BBH", 0x81, 0xFE, len(body)) + self.mask + apply_mask(body, self.mask)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before OPEN: {exc}"))
        elif not self.worker.closing:
            self.worker.lost += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        pos = 0
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.fail(buf[: buf.find(b"\r\n")].decode("latin-1"))
                return
            self.upgraded = True
            pos = end + 4
        worker = self.worker
        now = time.monotonic_ns()
        replies: list[bytes] = []
        size = len(buf)
        while size - pos >= 2:
            # Server frames are unmasked: 2-byte header, 16- or 64-bit extended length.
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            pos = end
            if opcode == 1:
                mark = buf.rfind(b'"t":', start, end)
                if mark >= 0:
                    sent = int(buf[mark + 4 : buf.index(b"}", mark, end)])
                    worker.received(now, sent)
                    if worker.closed_loop:
                        replies.append(self.frame(now))
                elif not self.opened.done():
                    if b'"OPEN"' in buf[start:end]:
                        self.opened.set_result(None)
                    else:
                        self.fail(buf[start:end].decode("utf-8", "replace"))
                        return
                else:
                    worker.other += 1
            elif opcode == 9:  # ping: answer with a masked pong
                payload = buf[start:end]
                header = bytes([0x8A, 0x80 | len(payload)]) + self.mask
                replies.append(header + apply_mask(payload, self.mask))
            elif opcode == 8:
                worker.lost += 1
        self.buffer = buf[pos:] if pos < size else b""
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))

    def fail(self, reason: str) -> None:
        """Give up on this client before OPEN."""
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()

    def send(self, now: int) -> None:
        """Send one CANDIDATE to the partner."""
        if self.transport is not None:
            self.transport.write(self.frame(now))


# --- Generator side: one worker process --------------------------------------------


@dataclass
class Worker:
    """The clients of one generator process and the counters of the current phase."""

    clients: list[Client] = field(default_factory=list)
    closed_loop: bool = False
    closing: bool = False
    #: The measured window, in ``time.monotonic_ns()`` nanoseconds.
    window: range = range(0)
    count: int = 0
    late: int = 0
    other: int = 0
    lost: int = 0
    latencies: array[int] = field(default_factory=lambda: array("q"))

    def received(self, now: int, sent: int) -> None:
        """Count one relayed message if it arrived inside the measured window."""
        if now in self.window:
            self.count += 1
            if len(self.latencies) < MAX_LATENCIES:
                self.latencies.append(now - sent)
        elif now >= self.window.stop:
            self.late += 1

    async def connect(self, port: int | list[int], first: int, count: int, path: str) -> float:
        """Open clients ``first`` … ``first+count-1`` and wait for every OPEN.

        With several ports (a cluster), client i connects to ``port[i % len]``:
        client i and its partner i^1 then sit on different brokers.

        Cancelling it leaves the clients opened so far in ``self.clients``.
        """
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
        began = time.monotonic()

        ports = port if isinstance(port, list) else [port]

        async def one(index: int) -> None:
            port = ports[index % len(ports)]
            request = (
                f"GET {path}peerjs?key=peerjs&id=c{index}&token=t{index} HTTP/1.1\r\n"
                f"Host: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            async with gate:
                _, client = await loop.create_connection(
                    lambda: Client(self, index, request), HOST, port
                )
                self.clients.append(client)
                await client.opened

        await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(first, first + count))), CONNECT_TIMEOUT
        )
        return time.monotonic() - began

    async def run(self, mode: str, start_at: float, seconds: float, load: float) -> dict[str, Any]:
        """One phase: paced (``load`` msg/s) or closed loop (``load`` in flight per client).

        Sending stops at the end of the window; returns the counters after a
        short drain.  Cancelling it stops sending.
        """
        self.count = self.late = self.other = 0
        self.latencies = array("q")
        window_start = int((start_at + WARMUP) * 1e9)
        self.window = range(window_start, window_start + int(seconds * 1e9))
        stop_at = self.window.stop / 1e9
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        clients = [c for c in self.clients if c.transport is not None]
        if mode == "saturate":
            self.closed_loop = True
            now = time.monotonic_ns()
            for _ in range(int(load)):
                for client in clients:
                    client.send(now)
            await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
            self.closed_loop = False
        else:
            tick, began, sent, turn = 0.005, time.monotonic(), 0, 0
            while (now_s := time.monotonic()) < stop_at and clients:
                due = int((now_s - began) * load) - sent
                now = time.monotonic_ns()
                for _ in range(due):
                    clients[turn].send(now)
                    turn = (turn + 1) % len(clients)
                sent += max(due, 0)
                await asyncio.sleep(tick)
        await asyncio.sleep(DRAIN)
        return {
            "count": self.count,
            "late": self.late,
            "other": self.other,
            "lost": self.lost,
            "latencies": self.latencies,
        }

    def close(self) -> None:
        """Cut every client (RST: no TIME_WAIT left behind)."""
        self.closing = True
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()
        self.clients.clear()
        self.lost = 0


def worker_main(pipe: Pipe) -> None:
    """Entry point of a generator process: obey commands from the pipe until ``exit``."""
    raise_fd_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = asyncio.new_event_loop
    loop = loop_factory()
    try:
        loop.run_until_complete(_worker_loop(pipe))
    finally:
        loop.close()


async def _worker_loop(pipe: Pipe) -> None:
    """Read commands, run them, send back results (or the error text)."""
    loop = asyncio.get_running_loop()
    worker = Worker()
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        try:
            if command == "exit":
                worker.close()
                return
            if command == "connect":
                worker = Worker()
                result: Any = await worker.connect(*args)
            elif command == "run":
                result = await worker.run(*args)
            elif command == "close":
                worker.close()
                await asyncio.sleep(0.2)
                result = None
            else:
                raise ValueError(f"unknown command {command!r}")
            pipe.send(("ok", result))
        except Exception as exc:  # reported to the parent, which stops the run
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


# --- Parent side: brokers ----------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerProcess:
    """One broker run as a child process; stopped by PID."""

    def __init__(
        self, name: str, clients: int, log_dir: Path, extra: list[str] | None = None
    ) -> None:
        self.name = name
        self.port = free_port()
        common = [
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--path",
            "/",
            "--alive_timeout",
            "3600000",
            "--concurrent_limit",
            str(clients + 1000),
        ]
        # One address, far above the default rate: turn those limits off.
        ours = ["--max-connections-per-ip", "0", "--max-handshakes-per-ip", "0"]
        ours += ["--rate-limit", "0", *(extra or [])]
        if name == "peerpy":
            argv = [sys.executable, "-m", "peerpy_server.cli", *common, *ours]
        elif name == "peerpy-asyncio":  # the same CLI with uvloop hidden: asyncio's own loop
            code = "import sys; sys.modules['uvloop'] = None; from peerpy_server.cli import main; "
            argv = [sys.executable, "-c", code + "sys.exit(main())", *common, *ours]
        elif name == "peer":
            argv = ["node", str(PEER_BIN), *common]
        elif name == "asgi":  # peerpy_server.asgi under uvicorn (uvloop, websockets-sansio)
            options = f"alive_timeout=3600, concurrent_limit={clients + 1000}, rate_limit=None, "
            options += "max_connections_per_ip=None, max_handshakes_per_ip=None"
            code = (
                "import uvicorn; from peerpy_server import BrokerConfig; "
                "from peerpy_server.asgi import BrokerApp; "
                f"app = BrokerApp(BrokerConfig({options})); "
                f"uvicorn.run(app, host={HOST!r}, port={self.port}, ws='websockets-sansio', "
                "log_level='warning', backlog=4096)"
            )
            argv = [sys.executable, "-c", code]
        else:
            raise ValueError(f"unknown broker {name!r} (peerpy, peerpy-asyncio or peer)")
        self.log = log_dir / f"{name}-{clients}-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=raise_fd_limit,
                cwd=ROOT,
            )
        self.pid = self.process.pid
        self.pids = [self.pid]
        self.ports: int | list[int] = self.port

    def wait_listening(self, timeout: float = 20.0) -> None:
        """Return once the broker accepts TCP connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen within {timeout} s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class ClusterProcesses:
    """``--brokers cluster``: a redis-server and two ``peerpy-server --redis`` processes.

    Clients alternate between the brokers, so every message crosses instances;
    CPU and RSS are those of the brokers plus Redis.
    """

    def __init__(self, name: str, clients: int, log_dir: Path) -> None:
        self.name = name
        self.redis_port = free_port()
        argv = ["redis-server", "--bind", HOST, "--port", str(self.redis_port), "--save", "",
                "--appendonly", "no"]  # fmt: skip
        self.redis = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://{HOST}:{self.redis_port}/0"
        time.sleep(0.3)
        self.brokers = [
            BrokerProcess("peerpy", clients, log_dir, ["--redis", url]) for _ in range(2)
        ]
        self.pids = [self.redis.pid, *(b.pid for b in self.brokers)]
        self.ports: int | list[int] = [b.port for b in self.brokers]

    def wait_listening(self, timeout: float = 20.0) -> None:
        for broker in self.brokers:
            broker.wait_listening(timeout)

    def stop(self) -> None:
        for broker in self.brokers:
            broker.stop()
        if self.redis.poll() is None:
            self.redis.kill()  # by PID
            self.redis.wait(5)


# --- Parent side: generator processes and phases ------------------------------------


class Generator:
    """The generator processes and the pipes to them."""

    def __init__(self, workers: int) -> None:
        context = mp.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.processes: list[Any] = []
        for _ in range(workers):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def call(self, per_worker: list[tuple[Any, ...]], timeout: float) -> list[Any]:
        """Send one command to each worker and gather the results."""
        for pipe, command in zip(self.pipes, per_worker, strict=True):
            pipe.send(command)
        results = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise RuntimeError(f"generator did not answer {per_worker[0][0]!r} in {timeout} s")
            status, result = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"generator: {result}")
            results.append(result)
        return results

    def stop(self) -> None:
        """Ask the workers to exit; kill any that does not."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError, BrokenPipeError):
                pipe.send(("exit",))
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


@dataclass
class Row:
    """Figures of one broker at one client count."""

    broker: str
    clients: int
    connect_s: float = 0.0
    rss0: int = 0
    rss_idle: int = 0
    rss_load: int = 0
    idle_cpu_s: float = 0.0
    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def per_connection(self) -> float:
        return (self.rss_idle - self.rss0) / self.clients


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def rss_of(pids: list[int]) -> int:
    return sum(rss_bytes(pid) for pid in pids)


def run_phase(
    gen: Generator,
    broker: BrokerProcess | ClusterProcesses,
    mode: str,
    load: float,
    seconds: float,
    row: Row,
) -> dict[str, float]:
    """Run one phase on all workers; measure broker and generator CPU over its window."""
    start_at = time.monotonic() + 0.3
    per_worker = load / len(gen.pipes) if mode == "paced" else load
    for pipe in gen.pipes:
        pipe.send(("run", mode, start_at, seconds, per_worker))
    time.sleep(max(0.0, start_at + WARMUP - time.monotonic()))
    cpu0, gen0 = cpu_of(broker.pids), sum(cpu_seconds(p) for p in gen.pids)
    t0 = time.monotonic()
    end = t0 + seconds
    while (left := end - time.monotonic()) > 0:  # sample RSS during the load
        row.rss_load = max(row.rss_load, rss_of(broker.pids))
        time.sleep(min(0.25, left))
    cpu1, gen1 = cpu_of(broker.pids), sum(cpu_seconds(p) for p in gen.pids)
    wall = time.monotonic() - t0
    results = []
    for pipe in gen.pipes:
        if not pipe.poll(DRAIN + 30):
            raise RuntimeError("generator did not finish its phase")
        status, result = pipe.recv()
        if status != "ok":
            raise RuntimeError(f"generator: {result}")
        results.append(result)
    count = sum(r["count"] for r in results)
    latencies = array("q", sorted(x for r in results for x in r["latencies"]))
    broker_cpu = cpu1 - cpu0
    return {
        "msgs": count,
        "rate": count / wall,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "cpu": broker_cpu,
        "util": broker_cpu / wall,
        "per_cpu": count / broker_cpu if broker_cpu > 0 else float("nan"),
        "gen_cpu": gen1 - gen0,
        "lost": sum(r["lost"] for r in results),
        "other": sum(r["other"] for r in results),
    }


def measure(name: str, clients: int, args: argparse.Namespace, gen: Generator, logs: Path) -> Row:
    """All phases of one broker at one client count; the broker is always stopped."""
    row = Row(name, clients)
    broker: BrokerProcess | ClusterProcesses
    if name == "cluster":
        broker = ClusterProcesses(name, clients, logs)
    else:
        broker = BrokerProcess(name, clients, logs)
    try:
        broker.wait_listening()
        time.sleep(1.0)
        row.rss0 = rss_of(broker.pids)
        workers = len(gen.pipes)
        # Even slices, so that client i and its partner i^1 live in the same worker.
        pairs = clients // 2
        bounds = [2 * (pairs * k // workers) for k in range(workers + 1)]
        bounds[-1] = clients
        commands = [
            ("connect", broker.ports, bounds[k], bounds[k + 1] - bounds[k], "/")
            for k in range(workers)
        ]
        row.connect_s = max(gen.call(commands, CONNECT_TIMEOUT + 10))
        cpu0 = cpu_of(broker.pids)
        time.sleep(args.settle)
        row.idle_cpu_s = cpu_of(broker.pids) - cpu0
        row.rss_idle = rss_of(broker.pids)
        row.phases["paced"] = run_phase(gen, broker, "paced", args.rate, args.seconds, row)
        window = max(1, args.inflight // clients)
        row.phases["saturate"] = run_phase(gen, broker, "saturate", window, args.seconds, row)
        gen.call([("close",)] * workers, 30)
    finally:
        broker.stop()
    return row


# --- Report ----------------------------------------------------------------------


def print_tables(rows: list[Row], args: argparse.Namespace) -> None:
    """The memory table, the load table and the ours/peer ratios."""
    print("\nMemory (VmRSS of the broker process)")
    print(
        f"{'broker':<14} {'N':>6} {'connect s':>9} {'RSS 0':>8} {'RSS idle':>9} "
        f"{'KiB/conn':>8} {'RSS load':>9} {'idle CPU%':>9}"
    )
    for r in rows:
        print(
            f"{r.broker:<14} {r.clients:>6} {r.connect_s:>9.1f} {r.rss0 / MIB:>6.1f}Mi "
            f"{r.rss_idle / MIB:>7.1f}Mi {r.per_connection / 1024:>8.2f} "
            f"{r.rss_load / MIB:>7.1f}Mi {100 * r.idle_cpu_s / args.settle:>8.1f}%"
        )
    print(
        f"\nLoad ({args.seconds:g} s measured per phase; paced = {args.rate:g} msg/s offered, "
        f"saturated = closed loop, {args.inflight} in flight or 1 per client)"
    )
    print(
        f"{'broker':<14} {'N':>6} {'phase':<9} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'brk CPU-s':>9} {'brk %':>6} {'msg/CPU-s':>9} {'gen CPU-s':>9}"
    )
    for r in rows:
        for phase, p in r.phases.items():
            print(
                f"{r.broker:<14} {r.clients:>6} {phase:<9} {p['rate']:>8.0f} {p['p50']:>8.2f} "
                f"{p['p99']:>8.2f} {p['cpu']:>9.2f} {100 * p['util']:>5.0f}% "
                f"{p['per_cpu']:>9.0f} {p['gen_cpu']:>9.2f}"
                + (f"  (lost {p['lost']:.0f} clients)" if p["lost"] else "")
            )
    by_key = {(r.broker, r.clients): r for r in rows}
    ratios = [
        (by_key[(name, n)], by_key[("peer", n)])
        for name in args.brokers
        if name != "peer"
        for n in args.clients
        if (name, n) in by_key and ("peer", n) in by_key
    ]
    if not ratios:
        return
    print("\nRatios ours/peer (msg/CPU-s: higher is better; memory and latency: lower is better)")
    print(
        f"{'broker':<14} {'N':>6} {'msg/CPU-s sat':>13} {'msg/CPU-s paced':>15} {'sat msg/s':>9} "
        f"{'KiB/conn':>8} {'RSS idle':>8} {'RSS load':>8} {'paced p99':>9}"
    )
    for ours, peer in ratios:
        os_, ps = ours.phases["saturate"], peer.phases["saturate"]
        op, pp = ours.phases["paced"], peer.phases["paced"]
        print(
            f"{ours.broker:<14} {ours.clients:>6} {os_['per_cpu'] / ps['per_cpu']:>13.2f} "
            f"{op['per_cpu'] / pp['per_cpu']:>15.2f} {os_['rate'] / ps['rate']:>9.2f} "
            f"{ours.per_connection / peer.per_connection:>8.2f} "
            f"{ours.rss_idle / peer.rss_idle:>8.2f} {ours.rss_load / peer.rss_load:>8.2f} "
            f"{op['p99'] / pp['p99']:>9.2f}"
        )
    print("\nTargets: msg/CPU-s (saturated) >= peer's; <= 8 KiB RSS per idle connection")
    for ours, peer in ratios:
        fast = ours.phases["saturate"]["per_cpu"] >= peer.phases["saturate"]["per_cpu"]
        small = ours.per_connection <= 8 * 1024
        print(
            f"  {ours.broker:<14} N={ours.clients:<6} msg/CPU-s {'PASS' if fast else 'FAIL'}   "
            f"KiB/conn {'PASS' if small else 'FAIL'} ({ours.per_connection / 1024:.2f})"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients",
        default="100,1000,10000",
        help="comma-separated client counts, even (default: 100,1000,10000)",
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds per phase (default: 10)"
    )
    parser.add_argument(
        "--brokers",
        default="peerpy,peer",
        help="peerpy (CLI, uvloop when installed), peerpy-asyncio, peer, cluster (2 peerpy "
        "brokers on redis-server, every message crossing instances), asgi (peerpy_server.asgi "
        "under uvicorn) (default: peerpy,peer)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=5000.0,
        help="paced phase: messages per second in total (default: 5000)",
    )
    parser.add_argument(
        "--inflight",
        type=int,
        default=2000,
        help="saturated phase: messages in flight in total, "
        "at least one per client (default: 2000)",
    )
    parser.add_argument("--workers", type=int, default=2, help="generator processes (default: 2)")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds idle before reading RSS (default: 2)"
    )
    parser.add_argument("--quick", action="store_true", help="100 and 1000 clients, 3 s phases")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = "100,1000", 3.0
    args.clients = [int(n) for n in args.clients.split(",")]
    args.brokers = args.brokers.split(",")
    if any(n < 2 or n % 2 for n in args.clients):
        parser.error("client counts must be even and at least 2")
    if not 1 <= args.workers <= 16 or args.seconds <= 0 or args.seconds > 600:
        parser.error("--workers must be 1..16 and --seconds in (0, 600]")
    unknown = set(args.brokers) - {"peerpy", "peerpy-asyncio", "peer", "cluster", "asgi"}
    if unknown:
        parser.error(f"unknown brokers {sorted(unknown)} (peerpy, peerpy-asyncio, peer)")
    if "peer" in args.brokers and not PEER_BIN.exists():
        parser.error(f"peer 1.0.2 not found at {PEER_BIN}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every broker at every client count and print the tables."""
    args = parse_args(argv)
    raise_fd_limit()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max(args.clients) + 100 > soft:
        print(f"warning: fd limit {soft} is below {max(args.clients)} clients", file=sys.stderr)
    rows: list[Row] = []
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    gen = Generator(args.workers)
    try:
        with tempfile.TemporaryDirectory(prefix="broker_load-") as tmp:
            for clients in args.clients:
                for name in args.brokers:
                    print(f"{name}: {clients} clients ...", flush=True)
                    rows.append(measure(name, clients, args, gen, Path(tmp)))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        gen.stop()
    if rows:
        print_tables(rows, args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
