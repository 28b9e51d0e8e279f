"""The broker under abuse: mass expiry, queue floods, per-source limits, bombs, log floods.

Each test turns one measured attack (issue 9, "The broker under abuse") into a
bounded regression test against the real broker over real sockets (the sweep
and queue accounting, driven on the sans-I/O realm, are in
tests/unit/server/test_realm.py).  Attackers that need their own address
connect from 127.0.0.2 (any 127/8 address is loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peerpy_server.cli import build_parser, config_from_args
from peerpy_server.logs import WarningLimiter
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..helpers.brokers import free_port
from ..helpers.flood import masked, raw_client
from ..helpers.signaling import peer_client
from ..helpers.targets import Target, run_ours

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
ATTACKER = "127.0.0.2"
#: Queue limits off but the memory budget: what the flood tests need.
UNCAPPED = ("--max-queues", "0", "--max-queues-per-sender", "0", "--rate-limit", "0")


def _broker_argv(port: int, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "peerpy_server.cli",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "WARNING",
        *flags,
    ]


@contextlib.contextmanager
def broker_process(*flags: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``peerpy-server`` as a child process on a free loopback port; stopped by PID."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "server"), str(ROOT / "protocol"), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.Popen(
        _broker_argv(port, *flags), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the broker did not start")
            time.sleep(0.05)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the broker ignored SIGTERM for 15 s") from None
        finally:
            assert proc.stderr is not None
            proc.stderr.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def flood_distinct_ids(sock: socket.socket, n: int) -> None:
    """Send one tiny OFFER to each of ``n`` distinct offline ids, 10 000 frames per write."""
    loop = asyncio.get_running_loop()
    for start in range(0, n, 10_000):
        chunk = b"".join(
            masked(b'{"type":"OFFER","dst":"g%d","payload":1}' % i)
            for i in range(start, min(n, start + 10_000))
        )
        await asyncio.wait_for(loop.sock_sendall(sock, chunk), 30)


async def test_queue_flood_stays_within_the_memory_budget() -> None:
    """100k queues from one client: the broker's RSS grows by about its 8 MiB budget, not 110 MB."""
    budget = 8 << 20
    with broker_process(*UNCAPPED, "--max-queued-bytes", str(budget), "-t", "60000") as (
        proc,
        port,
    ):
        async with raw_client(port, "flooder") as sock:
            await asyncio.sleep(0.3)
            base = rss_kib(proc.pid)
            await flood_distinct_ids(sock, 100_000)
            async with peer_client(Target("peerpy", port, "/"), "probe") as probe:
                await probe.send({"type": "HEARTBEAT"})  # round trip: the flood is handled
                await asyncio.sleep(0.5)
            grown = (rss_kib(proc.pid) - base) * 1024
    print(f"RSS grew by {grown / 2**20:.1f} MiB with a queue budget of 8 MiB")
    assert grown < 2 * budget, f"RSS grew by {grown / 2**20:.1f} MiB with a budget of 8 MiB"


# -- stalls --------------------------------------------------------------------


async def test_mass_expiry_does_not_stall_relaying() -> None:
    """While 100k queues of one flooder expire, two other clients' round trips stay short."""
    with broker_process(*UNCAPPED, "--max-queued-bytes", str(1 << 30), "-t", "1500") as (
        _,
        port,
    ):
        target = Target("peerpy", port, "/")
        async with (
            peer_client(target, "watchA") as a,
            peer_client(target, "watchB") as b,
            raw_client(port, "flooder") as sock,
        ):
            await flood_distinct_ids(sock, 100_000)
            flooded = time.monotonic()
            # Probe every 20 ms from the end of the flood until well after expiry
            # (the queues expire 1.5 s after they were created).
            trips: list[tuple[float, float]] = []  # (time since the flood, round trip)
            while time.monotonic() - flooded < 4.0:
                sent = time.monotonic()
                await a.send({"type": "CANDIDATE", "dst": "watchB", "payload": sent})
                assert (await b.recv(timeout=20))["payload"] == sent
                trips.append((sent - flooded, time.monotonic() - sent))
                await asyncio.sleep(0.02)
            expired = await _count_expires(sock)
    assert expired > 0, "no queue expired during the probe"
    every = sorted(trip for _, trip in trips)
    p99, worst = every[int(len(every) * 0.99)], every[-1]
    worst_expiry = max(trip for at, trip in trips if at > 1.5)
    print(
        f"probe round trips: n={len(every)} p99={p99 * 1000:.1f} ms max={worst * 1000:.1f} ms"
        f" (max after 1.5 s, while queues expire: {worst_expiry * 1000:.1f} ms)"
    )
    # Before: one 100k sweep blocked the broker for about 2 s, and uvloop's
    # reads let the flood itself hold the loop for a second.  Figures on an
    # idle machine are in docs/broker.md; the bounds leave room for a loaded
    # 2-core CI machine.
    assert p99 < 0.25, every[-10:]
    assert worst < 1.0, every[-10:]


async def test_sigterm_is_handled_during_mass_expiry() -> None:
    """SIGTERM while 100k queues expire stops the broker in seconds (it once ignored SIGTERM)."""
    with broker_process(*UNCAPPED, "--max-queued-bytes", str(1 << 30), "-t", "1000") as (
        proc,
        port,
    ):
        async with raw_client(port, "flooder") as sock:
            await flood_distinct_ids(sock, 100_000)
            async with peer_client(Target("peerpy", port, "/"), "probe") as probe:
                await probe.send({"type": "HEARTBEAT"})
            await asyncio.sleep(1.1)  # the first queues are due now
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 10)
            took = time.monotonic() - signalled
    print(f"exited {took:.2f} s after SIGTERM")
    assert proc.returncode == 0
    assert took < 5.0


async def test_default_limits_stop_a_flood_without_stalling() -> None:
    """With the defaults, a client flooding 200k OFFERs is closed (1008); others barely notice."""
    with broker_process() as (_, port):
        target = Target("peerpy", port, "/")
        async with (
            peer_client(target, "watchA") as a,
            peer_client(target, "watchB") as b,
            raw_client(port, "flooder") as sock,
        ):
            flood = asyncio.ensure_future(_flood_ignoring_reset(sock, 200_000))
            try:
                trips = []
                started = time.monotonic()
                while time.monotonic() - started < 3.0:
                    sent = time.monotonic()
                    await a.send({"type": "CANDIDATE", "dst": "watchB", "payload": sent})
                    assert (await b.recv(timeout=20))["payload"] == sent
                    trips.append(time.monotonic() - sent)
                    await asyncio.sleep(0.02)
            finally:
                await flood
            received = await _read_what_is_there(sock)
    assert b"\x88" in received, "no close frame"
    assert received.count(b"message rate limit exceeded") == 1
    # One EXPIRE at once for each id refused past max_queues_per_sender, until
    # the rate limit (a burst of 5000, 500/s) cut the flooder off.
    assert 0 < received.count(b'"EXPIRE"') <= 6000
    trips.sort()
    print(f"probe p99 {trips[int(len(trips) * 0.99)] * 1000:.1f} ms, max {trips[-1] * 1000:.1f} ms")
    assert trips[int(len(trips) * 0.99)] < 0.25, trips[-10:]


async def _flood_ignoring_reset(sock: socket.socket, n: int) -> None:
    with contextlib.suppress(OSError, asyncio.TimeoutError, TimeoutError):
        await flood_distinct_ids(sock, n)


async def _read_what_is_there(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    with contextlib.suppress(asyncio.TimeoutError, TimeoutError, OSError):
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 0.5)
            if not chunk:
                break
            data += chunk
    return data


async def _count_expires(sock: socket.socket) -> int:
    """How many EXPIREs the flooder has been sent (read what is there, briefly)."""
    return (await _read_what_is_there(sock)).count(b'"EXPIRE"')


# -- per-source limits ----------------------------------------------------------


def _half_open(count: int, port: int) -> list[socket.socket]:
    """``count`` TCP connections from the attacker's address that never send a byte."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        socks.append(sock)
        sock.bind((ATTACKER, 0))
        sock.connect(("127.0.0.1", port))
    return socks


async def test_half_open_sockets_from_one_address_are_capped() -> None:
    """300 silent sockets from one address hold at most 64 slots; others connect at once."""
    async with run_ours(handshake_timeout=1.0) as target:
        assert target.broker is not None
        socks = _half_open(300, target.port)
        try:
            await asyncio.sleep(0.2)
            assert target.broker.connections_from(ATTACKER) == (64, 64)
            start = time.monotonic()
            async with peer_client(target, "alice") as alice, peer_client(target, "bob") as bob:
                await alice.send({"type": "OFFER", "dst": "bob", "payload": 1})
                assert (await bob.recv())["src"] == "alice"
            assert time.monotonic() - start < 2.0
            await asyncio.sleep(1.5)  # the handshake timeout closes the rest
            assert target.broker.connections_from(ATTACKER) == (0, 0)
        finally:
            for sock in socks:
                sock.close()


async def test_full_broker_evicts_the_oldest_handshake() -> None:
    """With per-address caps off and every slot taken by silent sockets, a client still gets in."""
    async with run_ours(
        max_connections=100, max_handshakes_per_ip=None, max_connections_per_ip=None
    ) as target:
        assert target.broker is not None
        socks = _half_open(150, target.port)
        try:
            await asyncio.sleep(0.2)
            assert target.broker.connections <= 100
            async with peer_client(target, "alice") as alice, peer_client(target, "bob") as bob:
                await alice.send({"type": "OFFER", "dst": "bob", "payload": 1})
                assert (await bob.recv())["src"] == "alice"
        finally:
            for sock in socks:
                sock.close()


async def test_connections_per_address_are_capped() -> None:
    """Past max_connections_per_ip, an address's connections are refused; others are not."""
    async with run_ours(max_connections_per_ip=3) as target, contextlib.AsyncExitStack() as stack:
        assert target.broker is not None
        for i in range(3):
            ws = await stack.enter_async_context(
                connect(target.ws_url(id=f"a{i}", token="t"), local_addr=(ATTACKER, 0))
            )
            assert json.loads(await ws.recv()) == {"type": "OPEN"}
        with pytest.raises((OSError, InvalidHandshake, asyncio.TimeoutError, TimeoutError)):
            async with connect(
                target.ws_url(id="a3", token="t"), local_addr=(ATTACKER, 0), open_timeout=3
            ):
                pass
        assert target.broker.connections_from(ATTACKER) == (3, 0)
        async with peer_client(target, "other"):
            pass


async def test_message_rate_is_limited_per_connection() -> None:
    """A client past its burst is closed with 1008 and unregistered; a calm one carries on."""
    async with (
        run_ours(rate_limit=20.0, rate_burst=50) as target,
        peer_client(target, "calm") as calm,
        peer_client(target, "noisy") as noisy,
    ):
        assert target.broker is not None
        with contextlib.suppress(ConnectionClosed):
            for i in range(200):
                await noisy.send({"type": "CANDIDATE", "dst": "calm", "payload": i})
        assert await noisy.closed() == 1008
        assert "noisy" not in target.broker.realm
        received = 0
        while not await calm.silent(0.3):
            received += 1
        assert 45 <= received <= 60  # the burst, plus what the rate refilled meanwhile
        await calm.send({"type": "HEARTBEAT"})
        assert "calm" in target.broker.realm


async def test_ping_flood_meets_the_rate_limit() -> None:
    """Pings count as messages: 20 000 of them get ~5 000 pongs, then a 1008 close."""
    async with run_ours() as target, raw_client(target.port, "pinger", "/myapp") as sock:
        assert target.broker is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            ping = bytes((0x89, 0x82)) + b"\0\0\0\0hi"  # masked (all-zero mask) "hi"
            await loop.sock_sendall(sock, ping * 20_000)
        received = await _read_what_is_there(sock)
        assert "pinger" not in target.broker.realm
        async with peer_client(target, "other"):
            pass
    pongs = received.count(bytes((0x8A, 2)) + b"hi")
    assert 4_900 <= pongs <= 5_500, pongs
    assert b"message rate limit exceeded" in received


# -- bad input and logs -----------------------------------------------------------


async def test_deeply_nested_payload_is_ignored_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A payload nested 1000 deep is logged once and dropped; the sender stays connected."""
    caplog.set_level(logging.WARNING, "peerpy_server")
    deep = "[" * 1000 + "]" * 1000
    async with (
        run_ours() as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.send('{"type":"OFFER","dst":"bob","payload":' + deep + "}")
        await alice.send({"type": "OFFER", "dst": "bob", "payload": "after"})
        assert (await bob.recv())["payload"] == "after"
        assert await alice.silent(0.2)  # still open
    records = [r for r in caplog.records if r.name.startswith("peerpy_server")]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert "nested too deeply" in records[0].getMessage()
    assert records[0].exc_info is None


async def test_repeated_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """2 000 messages dropped for a full queue log one line, not 2 000."""
    caplog.set_level(logging.WARNING, "peerpy_server")
    async with (
        run_ours(max_queue_messages=5, expire_timeout=30) as target,
        peer_client(target, "alice") as alice,
    ):
        assert target.broker is not None
        for i in range(2000):
            await alice.send({"type": "CANDIDATE", "dst": "carol", "payload": i})
        await alice.send({"type": "HEARTBEAT"})
        await alice.silent(0.2)
        assert target.broker.realm.queued("carol") == 5
        assert target.broker.warnings.suppressed("queue-full") == 1994
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(full) == 1


def test_warning_limiter_reports_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    """After the interval, the next warning says how many similar ones were suppressed."""
    caplog.set_level(logging.WARNING, "test.limiter")
    log = logging.getLogger("test.limiter")
    limiter = WarningLimiter(10.0)
    for now in range(25):
        limiter.warning(log, "k", float(now), "event %d", now)
    limiter.warning(log, "other", 3.0, "another kind")
    assert [r.getMessage() for r in caplog.records] == [
        "event 0",
        "event 10 (and 9 similar suppressed in the last 10 s)",
        "event 20 (and 9 similar suppressed in the last 10 s)",
        "another kind",
    ]
    caplog.clear()
    limiter.flush(29.0)  # the 4 held back since t=20 are not due yet
    assert caplog.records == []
    limiter.flush(30.0)
    assert [r.getMessage() for r in caplog.records] == [
        "4 more 'k' warnings suppressed in the last 10 s"
    ]
    limiter.flush(45.0)
    assert len(caplog.records) == 1


def test_cli_flags_turn_limits_off() -> None:
    """0 turns each per-source cap and the rate limit off (peer 1.0.2's behaviour)."""
    parser = build_parser()
    defaults = config_from_args(parser.parse_args(["--port", "9000"]))
    assert (defaults.max_connections_per_ip, defaults.max_handshakes_per_ip) == (1000, 64)
    assert (defaults.rate_limit, defaults.rate_burst, defaults.handshake_timeout) == (
        500.0,
        5000,
        5.0,
    )
    off = config_from_args(
        parser.parse_args(
            [
                "--port",
                "9000",
                "--max-connections-per-ip",
                "0",
                "--max-handshakes-per-ip",
                "0",
                "--rate-limit",
                "0",
                "--max-queues",
                "0",
                "--max-queues-per-sender",
                "0",
                "--warning-interval",
                "0",
            ]
        )
    )
    assert off.max_connections_per_ip is None
    assert off.max_handshakes_per_ip is None
    assert off.rate_limit is None
    assert off.warning_interval is None
    assert off.max_queues is None
    assert off.max_queues_per_sender is None
