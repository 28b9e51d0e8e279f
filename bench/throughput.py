"""Bulk throughput and connect latency of peerpy against raw aiortc, on 127.0.0.1.

Run ``python bench/throughput.py`` (``--quick`` for a short smoke run,
``--profile`` to profile case (c)).  In one run it measures, each time with the
sender and the receiver in two separate processes:

(a) raw aiortc, OS-default UDP socket buffers;
(b) raw aiortc, 4 MiB UDP socket buffers;
(c) peerpy ``DataConnection``, ``raw`` serialization, ``reliable=True``, bytes messages;
(d) peerpy ``DataConnection``, ``binary`` serialization (BinaryPack, PeerJS chunking),
    with message-size values and with 1 MiB values;
(e) ``connect()`` -> open latency: peerpy through the in-process broker against a
    raw aiortc offer/answer exchanged directly (both in one process), plus the
    same in the two-process throughput runs;
(f) raw wrtc (``webrtc.aiortc``, libwebrtc), same flow control as (b);
(g) peerpy on wrtc, ``raw`` serialization (as (c));
(h) peerpy on wrtc, ``binary`` with 1 MiB values (as (d2));
(i) peerpy on aiortc on uvloop (as (c)).

(f), (g) and (h) need wrtc (``pip install 'peerpy-sdk[wrtc]'``) and are skipped
without it; they run on uvloop when installed, as peerpy's CLI does; (a)-(d)
run on plain asyncio unless ``--uvloop``.

The raw baselines are plain ``RTCPeerConnection``s built by
``peerpy.network.create_peer_connection`` with only ``local_addresses`` and
``udp_buffer_bytes`` set: aioice never gathers ``127.0.0.1`` by itself, and the
hook is what sizes the sockets.  Their sender uses the same flow control a
careful aiortc application writes (``bufferedAmountLowThreshold`` and the
``bufferedamountlow`` event) with peerpy's default water marks.

Every measurement is bounded in bytes (``--megabytes``) and time
(``--max-seconds``); MB means 10**6 bytes.  Only 127.0.0.1 is used; no STUN/TURN.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
LOOPBACK = "127.0.0.1"
TUNED_BUFFER = 4 * MIB


# --- What one measurement is -------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One throughput measurement: who sends what, how."""

    key: str
    title: str
    kind: str  # "raw" or "peerpy"
    udp_buffer: int | None  # None: OS default
    serialization: str = "raw"
    value_size: int = 16 * 1024
    total_bytes: int = 32 * 10**6
    high_water: int = 4 * MIB
    low_water: int = MIB
    max_seconds: float = 60.0
    profile_dir: str | None = None
    uvloop: bool = False
    backend: str = "aiortc"


def build_cases(args: argparse.Namespace) -> list[Case]:
    """The throughput cases of one run, in table order."""
    total = int(args.megabytes * 10**6)
    size = args.message_size
    peerpy_buffer = None if args.udp_buffer == 0 else args.udp_buffer
    common: dict[str, Any] = {
        "total_bytes": total,
        "value_size": size,
        "max_seconds": args.max_seconds,
        "uvloop": args.uvloop,
    }
    marks: dict[str, Any] = {"high_water": args.high_water, "low_water": args.low_water}
    cases = [
        Case("a", "raw aiortc, default UDP buffers", "raw", None, **common),
        Case("b", "raw aiortc, 4 MiB UDP buffers", "raw", TUNED_BUFFER, **common),
        Case("c", "peerpy raw, reliable", "peerpy", peerpy_buffer, **common, **marks),
        Case("d1", "peerpy binary, reliable", "peerpy", peerpy_buffer, "binary", **common, **marks),
        Case(
            "d2",
            "peerpy binary, 1 MiB values",
            "peerpy",
            peerpy_buffer,
            "binary",
            **{**common, "value_size": MIB},
            **marks,
        ),
    ]
    from peerpy.backends import uvloop_installed, wrtc_installed

    fast: dict[str, Any] = {**common, "uvloop": uvloop_installed() or args.uvloop}
    if wrtc_installed():
        wrtc: dict[str, Any] = {**fast, "backend": "wrtc"}
        cases += [
            Case("f", "raw wrtc", "raw", None, **wrtc),
            Case("g", "peerpy wrtc raw, reliable", "peerpy", peerpy_buffer, **wrtc, **marks),
            Case(
                "h",
                "peerpy wrtc binary, 1 MiB values",
                "peerpy",
                peerpy_buffer,
                "binary",
                **{**wrtc, "value_size": MIB},
                **marks,
            ),
        ]
    if uvloop_installed():
        cases.append(Case("i", "peerpy aiortc on uvloop", "peerpy", peerpy_buffer, **fast, **marks))
    if args.only:
        cases = [case for case in cases if case.key in args.only]
    return cases


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (this network namespace), from /proc/net/snmp."""
    try:
        with open("/proc/net/snmp") as f:
            lines = [line.split() for line in f if line.startswith("Udp:")]
    except OSError:
        return {}
    return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))


# --- Worker processes ----------------------------------------------------------------


async def pipe_recv(pipe: Pipe) -> Any:
    """Receive one object from a multiprocessing pipe without blocking the loop.

    Cancelling stops waiting; nothing is lost.
    """
    loop = asyncio.get_running_loop()
    while not pipe.poll():
        ready = loop.create_future()
        loop.add_reader(pipe.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(pipe.fileno())
    return pipe.recv()


def run_worker(
    main: Callable[..., Coroutine[Any, Any, dict[str, Any]]],
    case: Case,
    role: str,
    *args: Any,
) -> None:
    """Process entry point: run ``main`` bounded in time, send its result to the parent."""
    result_pipe: Pipe = args[-1]

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(main(case, *args), case.max_seconds)

    # CPU time, not wall time: time spent descheduled (other load, or the
    # receiver running after a loopback sendto) must not count as work.
    profiler = cProfile.Profile(time.process_time) if case.profile_dir else None
    try:
        if case.uvloop:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        if profiler is not None:
            profiler.enable()
        result = asyncio.run(bounded())
    except BaseException as exc:  # report every failure to the parent
        result = {"error": f"{role}: {type(exc).__name__}: {exc}"}
    finally:
        if profiler is not None and case.profile_dir:
            profiler.disable()
            profiler.dump_stats(os.path.join(case.profile_dir, f"{role}.prof"))
    result_pipe.send(result)


def raw_policy(udp_buffer: int | None) -> Any:
    """Loopback-only gathering, with the given UDP buffers (None: OS default)."""
    from peerpy.network import NetworkPolicy

    return NetworkPolicy(local_addresses=(LOOPBACK,), udp_buffer_bytes=udp_buffer)


async def timed_send(
    case: Case, peer: Pipe, send: Callable[[bytes], Awaitable[None]]
) -> dict[str, Any]:
    """Send ``total_bytes`` in values through ``send``, then wait for the receiver's word.

    Returns the sender's figures: ``t_start``, ``t_sent``, ``sent``, ``cpu_tx``
    (CPU seconds until the receiver got everything).
    """
    payload = os.urandom(case.value_size)
    sent = 0
    t_start, cpu_start = time.monotonic(), time.process_time()
    while sent < case.total_bytes:
        await send(payload)
        sent += len(payload)
    t_sent = time.monotonic()
    await pipe_recv(peer)  # the receiver got everything
    cpu = time.process_time() - cpu_start
    return {"t_start": t_start, "t_sent": t_sent, "sent": sent, "cpu_tx": cpu}


async def raw_sender(case: Case, peer: Pipe, result: Pipe) -> dict[str, Any]:
    """Offer over the pipe, then send ``total_bytes`` with bufferedAmount flow control."""
    from aiortc import RTCConfiguration

    from peerpy.backends import get_backend

    t0 = time.monotonic()
    config = RTCConfiguration(iceServers=[])
    backend = get_backend(case.backend)
    pc = backend.create_peer_connection(config, raw_policy(case.udp_buffer))
    channel = pc.createDataChannel("bench", ordered=True)
    opened, writable = asyncio.Event(), asyncio.Event()
    channel.on("open", opened.set)
    channel.on("bufferedamountlow", writable.set)
    channel.bufferedAmountLowThreshold = case.low_water
    await pc.setLocalDescription(await pc.createOffer())
    peer.send(pc.localDescription.sdp)
    await pc.setRemoteDescription(backend.description(await pipe_recv(peer), "answer"))
    await opened.wait()
    negotiation = time.monotonic() - t0

    async def send(payload: bytes) -> None:
        if channel.bufferedAmount > case.high_water:
            writable.clear()
            await writable.wait()
        channel.send(payload)

    figures = await timed_send(case, peer, send)
    await pc.close()
    return {**figures, "negotiation": negotiation}


async def raw_receiver(case: Case, peer: Pipe, result: Pipe) -> dict[str, Any]:
    """Answer over the pipe, then count bytes until ``total_bytes`` arrived."""
    from aiortc import RTCConfiguration

    from peerpy.backends import get_backend

    config = RTCConfiguration(iceServers=[])
    backend = get_backend(case.backend)
    pc = backend.create_peer_connection(config, raw_policy(case.udp_buffer))
    done = asyncio.Event()
    state = {"bytes": 0, "t_end": 0.0, "cpu_start": 0.0, "cpu": 0.0}

    def on_message(message: bytes | str) -> None:
        if not state["bytes"]:
            state["cpu_start"] = time.process_time()
        state["bytes"] += len(message)
        if state["bytes"] >= case.total_bytes and not done.is_set():
            state["t_end"] = time.monotonic()
            state["cpu"] = time.process_time() - state["cpu_start"]
            done.set()

    pc.on("datachannel", lambda channel: channel.on("message", on_message))
    await pc.setRemoteDescription(backend.description(await pipe_recv(peer), "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    peer.send(pc.localDescription.sdp)
    await done.wait()
    peer.send("done")
    await asyncio.sleep(0.05)  # let the final SACK leave
    await pc.close()
    return {"t_end": state["t_end"], "received": state["bytes"], "cpu_rx": state["cpu"]}


def _peer_kwargs(case: Case, url: str) -> dict[str, Any]:
    from peerpy.config import Limits
    from peerpy.network import NetworkPolicy

    return {
        "server": url,
        "ice_servers": [],
        "network": NetworkPolicy(
            local_addresses=(LOOPBACK,),
            remote_networks=("127.0.0.0/8", "::1/128"),
            udp_buffer_bytes=case.udp_buffer,
        ),
        "limits": Limits(send_high_water=case.high_water, send_low_water=case.low_water),
        "backend": case.backend,
    }


async def peerpy_sender(
    case: Case, url: str, rx_id: str, peer: Pipe, result: Pipe
) -> dict[str, Any]:
    """connect() through the broker, then send ``total_bytes`` in values."""
    from peerpy import Peer

    async with Peer(f"{rx_id}-tx", **_peer_kwargs(case, url)) as p:
        await pipe_recv(peer)  # the receiver is registered
        t0 = time.monotonic()
        conn = await p.connect(rx_id, serialization=case.serialization, reliable=True)
        negotiation = time.monotonic() - t0
        figures = await timed_send(case, peer, conn.send)
        await conn.close()
    return {**figures, "negotiation": negotiation}


async def peerpy_receiver(
    case: Case, url: str, rx_id: str, peer: Pipe, result: Pipe
) -> dict[str, Any]:
    """accept() one connection, then read values until ``total_bytes`` arrived."""
    from peerpy import Peer

    async with Peer(rx_id, **_peer_kwargs(case, url)) as p:
        peer.send("ready")
        conn = await p.accept()
        received = len(await conn.recv())
        cpu_start = time.process_time()
        while received < case.total_bytes:
            received += len(await conn.recv())
        t_end = time.monotonic()
        cpu = time.process_time() - cpu_start
        peer.send("done")
        await conn.wait_closed()
    return {"t_end": t_end, "received": received, "cpu_rx": cpu}


# --- Running the pairs ---------------------------------------------------------------


class BrokerThread:
    """The in-process broker, on its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        from peerpy_server import Broker, BrokerConfig

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Broker(BrokerConfig(host=LOOPBACK, port=0)) as broker:
            self.url = broker.url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> BrokerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the broker did not start within 10 s")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


_counter = 0


def run_pair(case: Case, broker_url: str) -> dict[str, Any]:
    """Run one sender and one receiver process for ``case``; return the merged figures."""
    global _counter
    _counter += 1
    ctx = mp.get_context("spawn")
    tx_peer, rx_peer = ctx.Pipe()
    tx_result_r, tx_result_w = ctx.Pipe(duplex=False)
    rx_result_r, rx_result_w = ctx.Pipe(duplex=False)
    if case.kind == "raw":
        tx_args: tuple[Any, ...] = (raw_sender, case, "sender", tx_peer, tx_result_w)
        rx_args: tuple[Any, ...] = (raw_receiver, case, "receiver", rx_peer, rx_result_w)
    else:
        rx_id = f"bench{os.getpid()}n{_counter}"
        tx_args = (peerpy_sender, case, "sender", broker_url, rx_id, tx_peer, tx_result_w)
        rx_args = (peerpy_receiver, case, "receiver", broker_url, rx_id, rx_peer, rx_result_w)
    before = udp_counters()
    procs = [ctx.Process(target=run_worker, args=a) for a in (rx_args, tx_args)]
    for proc in procs:
        proc.start()
    results: dict[str, Any] = {}
    for pipe in (tx_result_r, rx_result_r):
        if pipe.poll(case.max_seconds + 30):
            results.update(pipe.recv())
        else:
            results.setdefault("error", "a worker gave no result in time")
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()  # one of the two processes this function started
            proc.join(5)
    after = udp_counters()
    results["drops"] = after.get("RcvbufErrors", 0) - before.get("RcvbufErrors", 0)
    if "error" not in results:
        wall = results["t_end"] - results["t_start"]
        results["mbps"] = results["received"] / wall / 1e6
        # What the busier process would reach alone on a core: robust to load elsewhere.
        results["cpu_mbps"] = results["received"] / max(results["cpu_tx"], results["cpu_rx"]) / 1e6
        results["cpu_pct"] = (100 * results["cpu_tx"] / wall, 100 * results["cpu_rx"] / wall)
        # CPU milliseconds per MB, sender and receiver together.
        results["cpu_ms_mb"] = (
            1000 * (results["cpu_tx"] + results["cpu_rx"]) / (results["received"] / 1e6)
        )
    return results


# --- Connect latency (e), one process ------------------------------------------------


async def latency_worker(case: Case, url: str, rounds: int, result: Pipe) -> dict[str, Any]:
    """Median raw aiortc negotiation and peerpy connect() in one process, alternating."""
    from aiortc import RTCConfiguration

    from peerpy import Peer
    from peerpy.network import create_peer_connection

    async def raw_once() -> float:
        config = RTCConfiguration(iceServers=[])
        policy = raw_policy(TUNED_BUFFER)
        t0 = time.monotonic()
        pc1 = create_peer_connection(config, policy)
        pc2 = create_peer_connection(config, policy)
        channel = pc1.createDataChannel("bench", ordered=True)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await pc1.setLocalDescription(await pc1.createOffer())
        await pc2.setRemoteDescription(pc1.localDescription)
        await pc2.setLocalDescription(await pc2.createAnswer())
        await pc1.setRemoteDescription(pc2.localDescription)
        await opened.wait()
        elapsed = time.monotonic() - t0
        await pc1.close()
        await pc2.close()
        return elapsed

    raw: list[float] = []
    peerpy: list[float] = []
    kwargs = _peer_kwargs(case, url)
    async with Peer("latency-a", **kwargs) as a, Peer("latency-b", **kwargs) as b:

        async def accept_loop() -> None:
            while True:
                conn = await b.accept()
                await conn.wait_closed()

        acceptor = asyncio.create_task(accept_loop())
        await raw_once()  # warm-up: imports, certificate generation
        for _ in range(rounds):
            raw.append(await raw_once())
            t0 = time.monotonic()
            conn = await a.connect("latency-b", serialization="raw", reliable=True)
            peerpy.append(time.monotonic() - t0)
            await conn.close()
            await asyncio.sleep(0.05)
        acceptor.cancel()
    return {"raw": raw, "peerpy": peerpy}


def run_latency(case: Case, url: str, rounds: int) -> dict[str, Any]:
    """Run :func:`latency_worker` in a child process and return its samples."""
    ctx = mp.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=run_worker, args=(latency_worker, case, "latency", url, rounds, writer)
    )
    proc.start()
    result: dict[str, Any] = (
        reader.recv() if reader.poll(case.max_seconds + 30) else {"error": "latency: no result"}
    )
    proc.join(10)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    return result


# --- Profiles ------------------------------------------------------------------------

#: (substring of the file or function name, bucket), first match wins.
_BUCKETS: tuple[tuple[str, str], ...] = (
    ("epoll", "idle: waiting in epoll"),
    ("select.", "idle: waiting in epoll"),
    ("_openssl", "DTLS crypto (OpenSSL via cffi)"),
    ("OpenSSL/", "DTLS crypto (pyOpenSSL wrapper)"),
    ("cryptography/", "DTLS crypto (pyOpenSSL wrapper)"),
    ("_cffi", "DTLS crypto (pyOpenSSL wrapper)"),
    ("crc32c", "SCTP checksum (google_crc32c)"),
    ("sendto", "UDP syscalls"),
    ("recvfrom", "UDP syscalls"),
    ("aiortc/rtcsctptransport", "aiortc SCTP (Python)"),
    ("aiortc/rtcdtlstransport", "aiortc DTLS (Python)"),
    ("aiortc/rtcdatachannel", "aiortc data channel"),
    ("aiortc/", "aiortc other"),
    ("webrtc/", "wrtc (libwebrtc via webrtc.aiortc; native threads not profiled)"),
    ("wrtc", "wrtc (libwebrtc via webrtc.aiortc; native threads not profiled)"),
    ("aioice/", "aioice (ICE/STUN)"),
    ("peerpy/", "peerpy"),
    ("anyio/", "anyio"),
    ("asyncio/", "asyncio"),
    ("_asyncio", "asyncio"),
    ("pyee/", "pyee (events)"),
)


def _bucket(filename: str, function: str) -> str:
    where = f"{filename}:{function}"
    for needle, bucket in _BUCKETS:
        if needle in where:
            return bucket
    return "other"


def print_profile(path: str, title: str, top: int) -> None:
    """Print where one process spent its time: by bucket, then the top functions."""
    stats = pstats.Stats(path)
    raw_stats: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw_stats.values()) or 1e-9
    buckets: dict[str, float] = {}
    for (filename, _line, function), entry in raw_stats.items():
        key = _bucket(filename, function)
        buckets[key] = buckets.get(key, 0.0) + entry[2]
    print(f"\n--- profile of the {title} process: {total:.2f} s of CPU time ---")
    for key, seconds in sorted(buckets.items(), key=lambda item: -item[1]):
        print(f"  {seconds:7.2f} s {100 * seconds / total:5.1f} %  {key}")
    others = sorted(
        (
            (entry[2], f"{os.path.basename(filename)}:{function}")
            for (filename, _line, function), entry in raw_stats.items()
            if _bucket(filename, function) == "other"
        ),
        reverse=True,
    )
    print("  largest in 'other': " + ", ".join(f"{name} {sec:.2f} s" for sec, name in others[:8]))
    out = io.StringIO()
    pstats.Stats(path, stream=out).sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print("\n".join(lines[start:]))


def run_profile(case: Case, url: str, top: int) -> None:
    """Run ``case`` once under cProfile in both processes and print the profiles."""
    with tempfile.TemporaryDirectory() as tmp:
        # cProfile slows both processes down 2-3 times: allow for it.
        profiled = replace(case, profile_dir=tmp, max_seconds=3 * case.max_seconds)
        result = run_pair(profiled, url)
        print(f"\nprofiled run of ({case.key}) {case.title}: {_describe(result)}")
        for role in ("sender", "receiver"):
            path = os.path.join(tmp, f"{role}.prof")
            if os.path.exists(path):
                print_profile(path, role, top)


# --- Report --------------------------------------------------------------------------


def _describe(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error']}"
    tx, rx = result["cpu_pct"]
    return (
        f"{result['mbps']:.2f} MB/s, CPU sender {tx:.0f} % receiver {rx:.0f} %, "
        f"{result['drops']} UDP receive-buffer drops"
    )


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def print_versions() -> None:
    """Print what the figures were measured with."""
    import importlib.metadata as md

    names = ("aiortc", "aioice", "pyOpenSSL", "cryptography", "google-crc32c", "anyio")
    versions = ", ".join(f"{name} {md.version(name)}" for name in names)
    print(f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; Python {sys.version.split()[0]}")
    print(f"{versions}; {os.cpu_count()} CPUs; load average {_loadavg()}")
    try:
        limits = [
            Path(f"/proc/sys/net/core/{name}").read_text().strip()
            for name in ("rmem_default", "rmem_max", "wmem_default", "wmem_max")
        ]
        print("net.core rmem_default/rmem_max/wmem_default/wmem_max = " + "/".join(limits))
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 if every target passed, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=32.0, help="bytes per run, in MB")
    parser.add_argument("--message-size", type=int, default=16 * 1024, help="bytes per send()")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--rounds", type=int, default=15, help="connect latency samples")
    parser.add_argument("--quick", action="store_true", help="8 MB, 1 run, 5 latency samples")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound per process")
    parser.add_argument("--only", nargs="*", help="cases to run: a b c d1 d2 e f g h i")
    parser.add_argument("--high-water", type=int, default=4 * MIB, help="peerpy send_high_water")
    parser.add_argument("--low-water", type=int, default=MIB, help="peerpy send_low_water")
    parser.add_argument(
        "--udp-buffer", type=int, default=TUNED_BUFFER, help="peerpy UDP buffers (0: OS default)"
    )
    parser.add_argument("--uvloop", action="store_true", help="run every process on uvloop")
    parser.add_argument(
        "--profile", nargs="?", const="c", metavar="CASE", help="also profile a case (default c)"
    )
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile")
    args = parser.parse_args(argv)
    if args.quick:
        args.megabytes, args.repeat, args.rounds = min(args.megabytes, 8.0), 1, 5

    print_versions()
    print(
        f"{args.megabytes:g} MB per run, {args.message_size}-byte messages, median of "
        f"{args.repeat}; sender and receiver in two processes on {LOOPBACK}"
        f"{', on uvloop' if args.uvloop else ''}.\n"
        "Raw baselines: RTCPeerConnection(RTCConfiguration(iceServers=[])) via "
        "peerpy.network.create_peer_connection(NetworkPolicy(local_addresses=('127.0.0.1',), "
        "udp_buffer_bytes=None | 4 MiB)) (aioice skips 127.0.0.1 otherwise); "
        f"flow control {args.high_water}/{args.low_water} bytes high/low water."
    )
    load = float(_loadavg().split()[0]) if _loadavg() != "unknown" else 0.0
    if load > (os.cpu_count() or 1) / 2:
        print(
            f"WARNING: load average {load:.1f} on {os.cpu_count()} CPUs: other processes compete "
            "with the two benchmark processes, so wall-clock MB/s will vary from run to run; "
            "trust the paired ratios and the CPU columns more."
        )
    cases = build_cases(args)
    rows: dict[str, tuple[Case, list[dict[str, Any]]]]
    latency: dict[str, Any] = {}
    rows = {case.key: (case, []) for case in cases}
    with BrokerThread() as broker:
        # Interleave the cases, so that a burst of load elsewhere hits them alike.
        for repeat in range(args.repeat):
            for case in cases:
                run = run_pair(case, broker.url)
                rows[case.key][1].append(run)
                print(f"  [{repeat + 1}] ({case.key}) {case.title}: {_describe(run)}", flush=True)
        if not args.only or "e" in args.only:
            latency_case = replace(cases[0] if cases else Case("e", "", "peerpy", TUNED_BUFFER))
            latency = run_latency(
                replace(latency_case, udp_buffer=TUNED_BUFFER), broker.url, args.rounds
            )
        if args.profile:
            args_p = argparse.Namespace(**{**vars(args), "only": [args.profile]})
            profiled = build_cases(args_p)[0]
            run_profile(profiled, broker.url, args.top)
    print(f"load average at the end: {_loadavg()}")
    return report(rows, latency)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def paired_ratio(
    rows: dict[str, tuple[Case, list[dict[str, Any]]]], key: str, base: str, field: str
) -> float:
    """Median of ``key``/``base`` over the repeats where both runs succeeded.

    The cases are interleaved, so each pair ran under similar load elsewhere:
    this is steadier than the ratio of the two medians.
    """
    pairs = zip(rows[key][1], rows[base][1], strict=False)
    return median([run[field] / ref[field] for run, ref in pairs if field in run and field in ref])


def report(rows: dict[str, tuple[Case, list[dict[str, Any]]]], latency: dict[str, Any]) -> int:
    """Print the table and the PASS/FAIL lines; return the exit status."""
    speed = {
        key: median([r["mbps"] for r in runs if "mbps" in r]) for key, (_, runs) in rows.items()
    }
    ceiling = {
        key: median([r["cpu_mbps"] for r in runs if "cpu_mbps" in r])
        for key, (_, runs) in rows.items()
    }
    base_a, base_b = speed.get("a", float("nan")), speed.get("b", float("nan"))
    ceil_b = ceiling.get("b", float("nan"))
    print(
        f"\n{'case':<5}{'what':<34}{'value B':>9}{'MB/s':>8}{'x (a)':>7}{'x (b)':>7}"
        f"{'drops':>7}{'CPU MB/s':>9}{'x (b)':>7}{'negot. ms':>10}{'CPU ms/MB':>10}"
    )
    for key, (case, runs) in rows.items():
        drops = median([r["drops"] for r in runs if "drops" in r])
        negotiation = median([1000 * r["negotiation"] for r in runs if "negotiation" in r])
        cpu_ms = median([r["cpu_ms_mb"] for r in runs if "cpu_ms_mb" in r])
        print(
            f"{'(' + key + ')':<5}{case.title:<34}{case.value_size:>9}{speed[key]:>8.2f}"
            f"{speed[key] / base_a:>7.2f}{speed[key] / base_b:>7.2f}{drops:>7.0f}"
            f"{ceiling[key]:>9.2f}{ceiling[key] / ceil_b:>7.2f}{negotiation:>10.1f}{cpu_ms:>10.1f}"
        )
    print(
        "MB/s: wall clock, first send to last byte received.  CPU MB/s: bytes per CPU second "
        "of the busier process\n(what it would reach alone on a core; robust to other load). "
        "drops: kernel UDP RcvbufErrors.\nCPU ms/MB: sender + receiver CPU per MB. "
        "negot. ms: two processes, raw = pc creation to open over a pipe,\n"
        "peerpy = connect() through the broker."
    )
    failed = False

    def verdict(ok: bool, text: str) -> None:
        nonlocal failed
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'}  {text}")

    paired: dict[tuple[str, str], float] = {}
    print("\npaired ratios (median over repeats of case/baseline run in the same repeat):")
    for key in rows:
        parts = []
        for base in ("a", "b", "f"):
            if key == base or base not in rows:
                continue
            wall, cpu = (paired_ratio(rows, key, base, f) for f in ("mbps", "cpu_mbps"))
            paired[key, base] = wall
            parts.append(f"x ({base}) {wall:.2f} wall, {cpu:.2f} CPU")
        if parts:
            print(f"  ({key}) " + "; ".join(parts))
    print()
    if ("c", "a") in paired:
        ratio = paired["c", "a"]
        verdict(ratio >= 1.5, f"(c) >= 1.5 x (a), paired wall ratio: {ratio:.2f} x")
    if ("c", "b") in paired:
        ratio = paired["c", "b"]
        verdict(ratio >= 0.95, f"(c) >= 0.95 x (b), paired wall ratio: {ratio:.2f} x")
    targets = (("g", "f", 0.9), ("g", "b", 4.0), ("i", "b", 1.3))
    for key, base, target in targets:
        if key in rows and base in rows:
            ratio = paired_ratio(rows, key, base, "mbps")
            verdict(
                ratio >= target, f"({key}) >= {target} x ({base}), paired wall ratio: {ratio:.2f} x"
            )
    if latency.get("raw") and latency.get("peerpy"):
        raw_ms, peerpy_ms = 1000 * median(latency["raw"]), 1000 * median(latency["peerpy"])
        print(
            f"(e) connect -> open, one process, median of {len(latency['raw'])}: "
            f"raw aiortc {raw_ms:.1f} ms (min {1000 * min(latency['raw']):.1f}), "
            f"peerpy connect() {peerpy_ms:.1f} ms (min {1000 * min(latency['peerpy']):.1f})"
        )
        verdict(
            peerpy_ms <= raw_ms + 10, f"(e) peerpy <= raw + 10 ms: {peerpy_ms - raw_ms:+.1f} ms"
        )
    elif latency:
        verdict(False, f"(e) {latency.get('error', 'no samples')}")
    errors = [r["error"] for _, runs in rows.values() for r in runs if "error" in r]
    for error in errors:
        verdict(False, error)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
