"""Losing the broker never takes down a Peer or its connections (issue 9).

Real faults on real components: the broker process SIGKILLed and restarted on
its port, a TCP proxy that resets the signaling connection, a peer process
SIGSTOPped past the broker's ping interval, and brokers that end the socket in
each other way a WebSocket can end.  Each time the peer reports ``error``
(NetworkError) and ``disconnected``, ``async with Peer`` does not raise, open
connections keep carrying data, and ``auto_reconnect`` registers again.

The cases run on both backends (``peer_backend``, which child processes
inherit), calls included.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import socket
import struct
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from websockets.asyncio.server import ServerConnection, serve

from peerpy import sync
from peerpy.backoff import backoff_delays
from peerpy.config import Timeouts
from peerpy.dataconnection import DataConnection
from peerpy.exceptions import ConfigurationError, NetworkError
from peerpy.media import FrameCounter, ToneAudioTrack
from peerpy.mediaconnection import MediaConnection
from peerpy.peer import Peer

from ..helpers.brokers import peerpy_server
from ..helpers.processes import broker_process, peer_process, resetting_proxy

#: The issue's bound: rejoined within this long of the broker's return.
REJOIN_WITHIN = 5.0


class Watch:
    """What a peer reported: error and disconnected events, and when it reopened."""

    def __init__(self, peer: Peer) -> None:
        self.errors: list[BaseException] = []
        self.events: list[str] = []
        self.lost = anyio.Event()
        self.back = anyio.Event()
        peer.on("error", self._error)
        peer.on("disconnected", self._disconnected)
        peer.on("open", lambda _id: (self.events.append("open"), self.back.set()))
        # On an open peer that handler ran at once (PeerJS code expects it): count from now.
        self.events.clear()
        self.back = anyio.Event()

    def _error(self, error: BaseException) -> None:
        self.events.append("error")
        self.errors.append(error)

    def _disconnected(self, _id: str) -> None:
        self.events.append("disconnected")
        self.lost.set()

    def assert_lost_as_network_error(self) -> None:
        assert self.events[:2] == ["error", "disconnected"], self.events
        assert isinstance(self.errors[0], NetworkError), self.errors
        assert self.errors[0].type == "network"


async def exchange(a: DataConnection, b: DataConnection, value: Any) -> None:
    """``value`` goes a -> b and back b -> a, within 10 s."""
    with anyio.fail_after(10):
        await a.send(value)
        assert await b.recv() == value
        await b.send(value)
        assert await a.recv() == value


async def data_pair(caller: Peer, callee: Peer) -> tuple[DataConnection, DataConnection]:
    with anyio.fail_after(20):
        out = await caller.connect(callee.id or "", reliable=True)
        incoming = await callee.accept()
    assert out.backend == incoming.backend == caller.backend  # PEERPY_BACKEND
    return out, incoming


async def audio_call(caller: Peer, callee: Peer) -> tuple[MediaConnection, MediaConnection]:
    """caller calls callee with a tone; callee answers receive-only."""
    answered: list[MediaConnection] = []

    async def answer() -> None:
        call = await callee.accept_call()
        await call.answer([])
        answered.append(call)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            out = await caller.call(callee.id or "", [ToneAudioTrack()])
    return out, answered[0]


# -- the back-off schedule (pure) -------------------------------------------


def attempt_times(delays: Callable[[], Any], horizon: float) -> list[float]:
    """When attempts happen (seconds after the loss), failed attempts taking no time."""
    times, now = [], 0.0
    for wait in delays():
        now += wait
        times.append(now)
        if now > horizon:
            return times
    raise AssertionError("unreachable")  # pragma: no cover


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    """Waits double from 0.5 s to a 3 s cap; jitter shortens each by at most half."""
    defaults = Timeouts()
    assert (defaults.reconnect_initial, defaults.reconnect_max) == (0.5, 3.0)
    no_jitter = backoff_delays(0.5, 3.0, random=lambda: 0.0)
    assert list(itertools.islice(no_jitter, 6)) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    most_jitter = backoff_delays(0.5, 3.0, random=lambda: 1.0)
    assert list(itertools.islice(most_jitter, 5)) == [0.25, 0.5, 1.0, 1.5, 1.5]
    rng = random.Random(9)
    waits = list(itertools.islice(backoff_delays(0.5, 3.0, random=rng.random), 200))
    assert all(1.5 <= w <= 3.0 for w in waits[3:])
    assert len({round(w, 6) for w in waits[3:]}) > 150  # peers do not retry in step
    assert list(itertools.islice(backoff_delays(5.0, 2.0, jitter=0), 2)) == [2.0, 2.0]


@pytest.mark.parametrize("jitter_draw", ["none", "most", "random"])
def test_backoff_cap_bounds_rejoin_after_outages_up_to_60s(jitter_draw: str) -> None:
    """Whatever the outage (0.1 s to 60 s), the next attempt comes within 3 s of the return."""
    rng = random.Random(3)
    draw = {"none": lambda: 0.0, "most": lambda: 0.999, "random": rng.random}[jitter_draw]
    times = attempt_times(lambda: backoff_delays(0.5, 3.0, random=draw), 61.0)
    for tenth in range(1, 601):
        outage = tenth / 10
        next_attempt = min(t for t in times if t >= outage)
        assert next_attempt - outage <= 3.0


def test_backoff_rejects_bad_settings() -> None:
    """Non-positive back-off bounds or a jitter outside [0, 1) are configuration errors."""
    with pytest.raises(ConfigurationError, match="reconnect_max"):
        Timeouts(reconnect_max=0)
    with pytest.raises(ConfigurationError, match="reconnect_initial"):
        Timeouts(reconnect_initial=-1.0)
    with pytest.raises(ConfigurationError):
        backoff_delays(0.5, 3.0, jitter=1.0)
    with pytest.raises(ConfigurationError):
        backoff_delays(0.0, 3.0)


# -- the broker process killed ----------------------------------------------


@pytest.mark.slow
@pytest.mark.anyio
async def test_broker_sigkill_keeps_connections_and_rejoins_after_8s(
    peer_id: str, peer_backend: str
) -> None:
    """SIGKILL the broker: both peers report error + disconnected, data and media
    keep flowing through the 8 s outage, and both register again within 5 s of
    the broker's restart on the same port, where a new connection works."""
    outage = 8.0
    async with (
        broker_process() as broker,
        Peer(peer_id + "a", server=broker.url, auto_reconnect=True) as alice,
        Peer(peer_id + "b", server=broker.url, auto_reconnect=True) as bob,
    ):
        watches = [Watch(alice), Watch(bob)]
        conn, incoming = await data_pair(alice, bob)
        call, answered = await audio_call(alice, bob)
        async with FrameCounter(await answered.wait_stream()) as heard:
            with anyio.fail_after(10):
                await heard.wait(audio=10)
            broker.kill()
            killed = time.monotonic()
            with anyio.fail_after(10):
                for watch in watches:
                    await watch.lost.wait()
            for watch in watches:
                watch.assert_lost_as_network_error()
            assert not alice.open
            assert not bob.open
            # While the broker is gone, established connections carry on.
            await exchange(conn, incoming, {"broker": "gone", "n": 1})
            await exchange(conn, incoming, b"\x00" * 100_000)
            before = heard.counts["audio"]
            with anyio.fail_after(10):
                await heard.wait(audio=before + 25)  # half a second of audio
            await anyio.sleep(max(0.0, outage - (time.monotonic() - killed)))
            assert not alice.open
            assert not bob.open
            assert conn.open
            assert call.open
            assert answered.open

            await broker.start()
            returned = time.monotonic()
            with anyio.fail_after(REJOIN_WITHIN + 5):  # a clear failure, not a hang
                for watch in watches:
                    await watch.back.wait()
            rejoined = time.monotonic() - returned
            assert rejoined < REJOIN_WITHIN, f"rejoined {rejoined:.1f} s after the return"
            assert alice.open
            assert bob.open
            await exchange(conn, incoming, "still the same connection")
            before = heard.counts["audio"]
            with anyio.fail_after(10):
                await heard.wait(audio=before + 25)
        # The restarted broker knows both ids again: a new connection works.
        again, again_incoming = await data_pair(bob, alice)
        await exchange(again, again_incoming, "through the restarted broker")
        assert conn.open


# -- a proxy resets the signaling connection ------------------------------


@pytest.mark.anyio
async def test_proxy_reset_keeps_connections_and_rejoins(peer_id: str, peer_backend: str) -> None:
    """An RST on the signaling socket (a proxy or NAT dropping the flow): error +
    disconnected, the data connection carries on, and the peer rejoins at once."""
    async with (
        peerpy_server(path="/") as url,
        resetting_proxy(urllib.parse.urlsplit(url).port or 0) as proxy,
        Peer(peer_id + "a", server=proxy.url, auto_reconnect=True) as alice,
        Peer(peer_id + "b", server=url) as bob,
    ):
        watch = Watch(alice)
        conn, incoming = await data_pair(alice, bob)
        assert await proxy.reset() == 1
        reset_at = time.monotonic()
        with anyio.fail_after(10):
            await watch.lost.wait()
        watch.assert_lost_as_network_error()
        assert "ConnectionResetError" in str(watch.errors[0]) or "reset" in str(watch.errors[0]), (
            watch.errors[0]
        )
        await exchange(conn, incoming, "after the reset")
        with anyio.fail_after(REJOIN_WITHIN + 5):
            await watch.back.wait()
        assert time.monotonic() - reset_at < REJOIN_WITHIN
        assert alice.open
        assert bob.open
        again, again_incoming = await data_pair(bob, alice)
        await exchange(again, again_incoming, "found alice again")
        await exchange(conn, incoming, "old connection too")


# -- a peer process stopped past the broker's ping interval -----------------


@pytest.mark.anyio
async def test_peer_process_stopped_past_ping_interval_survives(
    peer_id: str, peer_backend: str
) -> None:
    """SIGSTOP a peer process until the broker (pinging every 1 s) dropped it, then
    SIGCONT: the process lives, its data connection still echoes, and it registers
    again by itself."""
    async with (
        broker_process("--ping-interval", "1", "--allow_discovery") as broker,
        peer_process(broker.url, peer_id + "c") as child,
        Peer(peer_id + "a", server=broker.url) as alice,
    ):
        await child.wait_line("ready")
        with anyio.fail_after(20):
            conn = await alice.connect(peer_id + "c", reliable=True)
        await child.wait_line("accepted")
        with anyio.fail_after(10):
            await conn.send("ping 1")
            assert await conn.recv() == "ping 1"

        child.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            with anyio.fail_after(15):  # the broker notices within two intervals
                while True:
                    if peer_id + "c" not in await alice.list_peers():
                        break
                    await anyio.sleep(0.2)
            stopped_for = time.monotonic() - stopped_at
            assert stopped_for > 1.0  # past the ping interval
        finally:
            child.signal(signal.SIGCONT)
        mark = len(child.lines)
        await child.wait_line("event error network NetworkError", start=mark)
        await child.wait_line("event disconnected", start=mark)
        await child.wait_line("event open", start=mark, within=REJOIN_WITHIN + 5)
        assert child.process.returncode is None
        with anyio.fail_after(10):
            await conn.send("ping 2")
            assert await conn.recv() == "ping 2"
        assert peer_id + "c" in await alice.list_peers()
        with anyio.fail_after(20):
            again = await alice.connect(peer_id + "c")
            await again.send({"n": 3})
            assert await again.recv() == {"n": 3}


# -- every other way the socket can end -------------------------------------


async def _close_normally(ws: ServerConnection) -> None:
    await ws.close(1000, "bye")


async def _close_going_away(ws: ServerConnection) -> None:
    await ws.close(1001, "going away")


async def _close_with_error(ws: ServerConnection) -> None:
    await ws.close(1011, "internal error")


async def _reset(ws: ServerConnection) -> None:
    raw = ws.transport.get_extra_info("socket")
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


async def _eof_without_close_frame(ws: ServerConnection) -> None:
    ws.transport.write_eof()
    with anyio.move_on_after(2):
        await ws.wait_closed()


async def _invalid_frame(ws: ServerConnection) -> None:
    ws.transport.write(b"\x8f\x00")  # FIN + reserved opcode 0xF: a protocol error
    with anyio.move_on_after(2):
        await ws.wait_closed()


async def _frames_then_close(ws: ServerConnection) -> None:
    for n in range(50):
        await ws.send(json.dumps({"type": "CANDIDATE", "src": "x", "payload": {"n": n}}))
    await ws.close(1000)


ENDINGS: dict[str, Callable[[ServerConnection], Awaitable[None]]] = {
    "close 1000": _close_normally,
    "close 1001": _close_going_away,
    "close 1011": _close_with_error,
    "reset": _reset,
    "eof without close frame": _eof_without_close_frame,
    "invalid frame": _invalid_frame,
    "frames then close": _frames_then_close,
}


@pytest.fixture
async def ending_broker(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[str]]]:
    """A broker that says OPEN, then ends the socket the way the test names."""
    ending = ENDINGS[request.param]
    seen: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append(ws.request.path if ws.request else "")
        await ws.send(json.dumps({"type": "OPEN"}))
        await anyio.sleep(0.2)
        await ending(ws)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"http://127.0.0.1:{port}/", seen


@pytest.mark.anyio
@pytest.mark.parametrize("ending_broker", list(ENDINGS), indirect=True)
async def test_every_socket_ending_is_a_network_error(
    ending_broker: tuple[str, list[str]], peer_id: str
) -> None:
    """However the broker's socket ends, the peer reports NetworkError then
    disconnected, stays usable, and auto_reconnect comes back."""
    url, seen = ending_broker
    timeouts = Timeouts(reconnect_initial=0.2, reconnect_max=0.5)
    async with Peer(peer_id, server=url, auto_reconnect=True, timeouts=timeouts) as peer:
        watch = Watch(peer)
        with anyio.fail_after(10):
            await watch.lost.wait()
        watch.assert_lost_as_network_error()
        with anyio.fail_after(10):
            await watch.back.wait()  # this broker says OPEN to everyone
        assert len(seen) >= 2
    assert peer.destroyed


@pytest.mark.anyio
async def test_failed_heartbeat_ends_the_session_as_network_error(peer_id: str) -> None:
    """A heartbeat that cannot be sent drops the socket and reports NetworkError."""
    async with peerpy_server(path="/") as url:
        timeouts = Timeouts(heartbeat=0.2)
        async with Peer(peer_id, server=url, auto_reconnect=True, timeouts=timeouts) as peer:
            watch = Watch(peer)
            socket_ = peer._signaling._socket
            assert socket_ is not None

            async def broken_send(*args: Any, **kwargs: Any) -> None:
                raise OSError(101, "Network is unreachable")  # a fault to make testable

            socket_.send = broken_send  # type: ignore[method-assign]
            with anyio.fail_after(10):
                await watch.lost.wait()
            watch.assert_lost_as_network_error()
            assert "Network is unreachable" in str(watch.errors[0])
            with anyio.fail_after(10):
                await watch.back.wait()


# -- the blocking facade ----------------------------------------------------


def test_sync_peer_survives_broker_sigkill(peer_id: str, peer_backend: str) -> None:
    """peerpy.sync: the broker SIGKILLed under two blocking peers; handlers see
    error + disconnected, the connection carries on, and both come back."""
    from ..helpers.processes import BrokerProcess

    broker = BrokerProcess()
    broker.start_blocking()
    events: list[tuple[str, str]] = []
    try:
        with (
            sync.Peer(peer_id + "a", server=broker.url, auto_reconnect=True) as alice,
            sync.Peer(peer_id + "b", server=broker.url, auto_reconnect=True) as bob,
        ):
            for name, peer in (("alice", alice), ("bob", bob)):
                for event in ("error", "disconnected", "open"):
                    peer.on(event, lambda *a, n=name, e=event: events.append((n, e)))
            # On an open peer an open handler runs at once (a PeerJS habit): seen, then reset.
            deadline = time.monotonic() + 5
            while sorted(events) != [("alice", "open"), ("bob", "open")]:
                assert time.monotonic() < deadline, events
                time.sleep(0.01)
            events.clear()
            conn = alice.connect(bob.id or "", reliable=True)
            incoming = bob.accept(timeout=20)
            broker.kill()
            deadline = time.monotonic() + 10
            while len([e for e in events if e[1] == "disconnected"]) < 2:
                assert time.monotonic() < deadline, events
                time.sleep(0.05)
            for name in ("alice", "bob"):
                mine = [e for n, e in events if n == name]
                assert mine[:2] == ["error", "disconnected"], events
            conn.send("no broker")
            assert incoming.recv(timeout=10) == "no broker"
            broker.start_blocking()
            deadline = time.monotonic() + REJOIN_WITHIN + 5
            while not (alice.open and bob.open):
                assert time.monotonic() < deadline, events
                time.sleep(0.05)
            incoming.send("broker back")
            assert conn.recv(timeout=10) == "broker back"
    finally:
        broker.stop()
