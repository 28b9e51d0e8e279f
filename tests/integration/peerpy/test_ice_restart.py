"""ICE restart between two wrtc peers (peerpy.icerestart) on loopback.

The UDP ports of the connection's selected pair are dropped with nftables, so
the path dies as when an address goes away, while new ports (an ICE restart
gathers new candidates) still work.  The same DataConnection must go on over
the *same* peer connection: every value once and in order.  When the restart
cannot complete, the connection falls back to a new peer connection.

nftables rules apply to the whole network namespace: these tests run only
in one where loopback is the only interface (``scripts/test`` runs the suite
in such a namespace as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from peerpy import DataConnection, Timeouts
from peerpy import icerestart as icerestart_module
from peerpy.backends import wrtc_installed
from peerpy.peer import Peer

from ...helpers.unavailable import unavailable

pytestmark = pytest.mark.anyio

TIMEOUTS = Timeouts(remote_gone=3.0, resume=30.0, reconnect_initial=0.2, reconnect_max=0.5)


def _unavailable() -> str | None:
    if not wrtc_installed():
        return "wrtc is not installed (pip install 'peerpy-sdk[wrtc]')"
    if os.geteuid() != 0 or shutil.which("nft") is None:
        return "dropping a path needs root and nft"
    # scripts/test's namespace (PEERPY_NETNS) holds only loopback, but the lab tests of
    # another worker briefly create their veth pairs in it before moving them away.
    own = os.environ.get("PEERPY_NETNS") == "1"
    if not own and [name for _, name in socket.if_nameindex()] != ["lo"]:
        return "nftables rules need a namespace of its own (loopback only): run scripts/test"
    return None


@pytest.fixture
def drop_ports() -> Iterator[Callable[[list[int]], None]]:
    """``drop(ports)``: drop every UDP packet from or to these ports until the test ends."""
    reason = _unavailable()
    if reason is not None:
        unavailable(reason)
    table = f"icerestart{os.getpid()}"

    def nft(*command: str) -> None:
        subprocess.run(["nft", *command], check=True, capture_output=True, timeout=10)

    def drop(ports: list[int]) -> None:
        nft("add", "table", "inet", table)
        nft("add", "chain", "inet", table, "out", "{ type filter hook output priority 0; }")
        for port in ports:
            for direction in ("sport", "dport"):
                nft("add", "rule", "inet", table, "out", "udp", direction, str(port), "drop")

    try:
        yield drop
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, timeout=10)


def value(n: int) -> Any:
    """Small values and ones chunked by the binary serialization, mixed."""
    return bytes([n % 256]) * 20_000 if n % 7 == 0 else {"n": n}


async def stream_across_a_dead_path(
    url: str, peer_id: str, drop: Callable[[list[int]], None], *, ignore_restarts: bool = False
) -> tuple[DataConnection, DataConnection, object, object, list[str]]:
    """Stream 250 values a -> b; the path dies after 80. Returns both connections, the peer
    connections they opened on (a's, b's) and the events seen, once all arrived in order."""
    events: list[str] = []
    async with (
        Peer(peer_id + "a", server=url, backend="wrtc", timeouts=TIMEOUTS) as alice,
        Peer(peer_id + "b", server=url, backend="wrtc", timeouts=TIMEOUTS) as bob,
    ):
        conn = await alice.connect(peer_id + "b", reliable=True, label="stream")
        incoming = await bob.accept()
        assert conn.resumable
        assert conn._resumable is not None
        assert incoming._resumable is not None
        assert conn._resumable.switch.ice_restart.agreed
        if ignore_restarts:  # the answerer cannot apply a restart OFFER: it never answers
            restart = incoming._resumable.switch.ice_restart

            async def ignore(signal: Any) -> None:
                pass

            restart.on_signal = ignore  # type: ignore[method-assign]
        pcs = conn.peer_connection, incoming.peer_connection
        conn.on("reconnecting", lambda error: events.append("a reconnecting"))
        conn.on("resumed", lambda: events.append("a resumed"))
        incoming.on("resumed", lambda: events.append("b resumed"))
        ports = [route.local_address[1] for route in (conn.route, incoming.route) if route]
        total = 250
        got: list[Any] = []

        async def receive() -> None:
            async for item in incoming:
                got.append(item)
                if len(got) == total:
                    return

        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                for n in range(total):
                    if n == 81:
                        drop(ports)  # the path dies under the stream
                    await conn.send(value(n))
                    await anyio.sleep(0.005)
        assert got == [value(n) for n in range(total)]
        await incoming.send("back")
        with anyio.fail_after(10):
            assert await conn.recv() == "back"
        return conn, incoming, *pcs, events


async def test_a_dead_path_is_resumed_by_an_ice_restart(
    url: str, peer_id: str, drop_ports: Callable[[list[int]], None]
) -> None:
    """Two wrtc peers resume on the same peer connection (new ICE credentials): every value
    once and in order, reconnecting then resumed on both sides, a new generation number."""
    conn, incoming, pc_a, pc_b, events = await stream_across_a_dead_path(url, peer_id, drop_ports)
    assert conn.peer_connection is pc_a
    assert incoming.peer_connection is pc_b
    assert {"a reconnecting", "a resumed", "b resumed"} <= set(events)
    assert conn._resumable is not None
    assert conn._resumable.switch.ice_restart.restarts == 1
    assert conn.generation == incoming.generation == 1


async def test_a_restart_that_cannot_complete_falls_back_to_a_new_peer_connection(
    url: str,
    peer_id: str,
    drop_ports: Callable[[list[int]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the restart does not complete within RESTART_ATTEMPT (the remote never answers
    it), the originator makes a new peer connection: every value still once and in order."""
    monkeypatch.setattr(icerestart_module, "RESTART_ATTEMPT", 1.0)
    conn, incoming, pc_a, pc_b, events = await stream_across_a_dead_path(
        url, peer_id, drop_ports, ignore_restarts=True
    )
    assert conn.peer_connection is not pc_a
    assert incoming.peer_connection is not pc_b
    assert {"a resumed", "b resumed"} <= set(events)
    assert conn._resumable is not None
    assert conn._resumable.switch.ice_restart.restarts == 0
    assert conn.generation == incoming.generation >= 2  # the restart's number, then a new one
