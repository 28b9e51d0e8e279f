"""OFFER floods: half-open incoming connections are bounded, and a real caller still connects.

A stranger who knows a peer's id can send it OFFERs through the broker that
never complete.  Each test here floods a real :class:`~peerpy.Peer` through
the real broker with raw WebSocket clients (one id, or many ids) sending
valid OFFERs whose SDP belongs to an aiortc connection that answers ICE checks
but never starts DTLS, while a real caller connects.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import anyio
import pytest
from peerpy_protocol.payloads import OfferPayload
from websockets.asyncio.client import ClientConnection, connect

from peerpy.config import Limits, Timeouts, resolve_network, resolve_rtc_configuration
from peerpy.connection import Connection
from peerpy.network import create_peer_connection
from peerpy.peer import Peer

from ..helpers.offers import data_offer, offer_frame

pytestmark = pytest.mark.anyio

FLOOD = 300  # OFFERs per flood, as in the issue
HALF_OPEN = 3.0  # Timeouts.half_open in these tests (the default is 10 s)
LEGIT_DEADLINE = 5.0  # the caller must have an open connection within this, flood or not


@pytest.fixture
async def flood_sdp() -> AsyncIterator[str]:
    """The SDP of a live aiortc connection that will never get an answer.

    It answers the target's ICE checks (its remote ufrag is unknown, so aioice
    accepts any) but never starts DTLS, so the target's connection stays half-open.
    """
    pc = create_peer_connection(resolve_rtc_configuration(), resolve_network())
    pc.createDataChannel("x")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        yield pc.localDescription.sdp
    finally:
        await pc.close()


def ws_url(http_url: str, peer_id: str) -> str:
    return "ws" + http_url[4:] + f"peerjs?key=peerjs&id={peer_id}&token=t{peer_id}"


def offer(dst: str, sdp: str, connection_id: str) -> str:
    return offer_frame(dst, data_offer(sdp, connection_id, label="x"))


async def drain(ws: ClientConnection) -> None:
    """Read (and drop) what the broker relays back: the target's ANSWERs."""
    async for _ in ws:
        pass


async def flood(url: str, target: str, sdp: str, ids: list[str], spread: float) -> None:
    """Send FLOOD OFFERs to ``target`` from ``ids`` in turn, evenly over ``spread`` seconds."""
    async with anyio.create_task_group() as tg:
        sockets = []
        for attacker in ids:
            ws = await connect(ws_url(url, attacker), max_size=None)
            assert json.loads(await ws.recv())["type"] == "OPEN"
            sockets.append(ws)
            tg.start_soon(drain, ws)
        batch = 10
        for i in range(0, FLOOD, batch):
            for n in range(i, i + batch):
                await sockets[n % len(sockets)].send(offer(target, sdp, f"dc_flood{n}"))
            await anyio.sleep(spread * batch / FLOOD)
        # Let the broker relay what is sent before the sockets close.
        await anyio.sleep(0.5)
        for ws in sockets:
            await ws.close()


class Watch:
    """Counts the target's OFFERs and its half-open connections after each one."""

    def __init__(self, peer: Peer) -> None:
        self.offers = 0
        self.max_half_open = 0
        self.max_from_one_id = 0
        self.connections: list[Connection] = []
        on_offer: Callable[[str, OfferPayload], None] = peer._router.on_offer

        def watched(src: str, payload: OfferPayload) -> None:
            self.offers += 1
            on_offer(src, payload)
            conn = peer.get_connection(src, payload.connection_id)
            if conn is not None:
                self.connections.append(conn)
            half_open = peer.half_open_connections()
            self.max_half_open = max(self.max_half_open, len(half_open))
            by_id: dict[str, int] = {}
            for c in half_open:
                by_id[c.peer] = by_id.get(c.peer, 0) + 1
            self.max_from_one_id = max(self.max_from_one_id, *by_id.values(), 0)

        peer._router.on_offer = watched


async def legit_call(url: str, caller_id: str, target: Peer) -> float:
    """Connect to ``target`` and exchange a message both ways; return the time to open."""
    async with Peer(caller_id, server=url) as caller:
        started = time.monotonic()
        with anyio.fail_after(LEGIT_DEADLINE):
            conn = await caller.connect(target.id or "", reliable=True)
        elapsed = time.monotonic() - started
        with anyio.fail_after(10):
            incoming = await target.accept()
            assert incoming.peer == caller_id
            await conn.send({"ping": 1})
            assert await incoming.recv() == {"ping": 1}
            await incoming.send("pong")
            assert await conn.recv() == "pong"
        await conn.close()
        return elapsed


async def wait_until(condition: Callable[[], bool], limit: float) -> None:
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 - polling the target's tables
            await anyio.sleep(0.1)


async def check_flood(
    url: str, peer_id: str, sdp: str, attackers: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    limits = Limits()
    async with Peer(peer_id, server=url, timeouts=Timeouts(half_open=HALF_OPEN)) as target:
        watch = Watch(target)
        elapsed: list[float] = []

        async def call_during_flood() -> None:
            # Call once more OFFERs arrived than Limits.max_connections (256)
            # allows open, while the rest of the flood keeps coming.
            await wait_until(lambda: watch.offers >= FLOOD - 30, 30)
            elapsed.append(await legit_call(url, peer_id + "legit", target))

        flood_started = time.monotonic()
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(flood, url, peer_id, sdp, attackers, 3.0)
                tg.start_soon(call_during_flood)
        flood_over = time.monotonic()

        assert len(elapsed) == 1
        assert elapsed[0] < LEGIT_DEADLINE
        # The flood reached the target and filled what it could, never more.
        assert watch.offers >= FLOOD
        # Hundreds of half-open connections closed, but one warning per HALF_OPEN s.
        assert target._incoming.admission.crowded >= FLOOD - limits.max_half_open
        warnings = [r for r in caplog.records if "too many incoming" in r.getMessage()]
        assert all(r.levelno == logging.WARNING for r in warnings)
        assert 1 <= len(warnings) <= 1 + (time.monotonic() - flood_started) / HALF_OPEN
        assert all(b.created - a.created > HALF_OPEN - 0.1 for a, b in pairwise(warnings))
        assert watch.max_half_open <= limits.max_half_open
        assert watch.max_from_one_id <= limits.max_half_open_per_peer
        if len(attackers) == 1:
            assert watch.max_from_one_id == limits.max_half_open_per_peer
        else:
            assert watch.max_half_open == limits.max_half_open
        # What is left of the flood times out: nothing half-open, every
        # connection it caused closed with its RTCPeerConnection.
        await wait_until(lambda: not target.half_open_connections(), HALF_OPEN + 5)
        assert time.monotonic() - flood_over < HALF_OPEN + 5
        flooded = [c for c in watch.connections if c.peer != peer_id + "legit"]
        assert len(flooded) >= FLOOD
        await wait_until(lambda: all(c.closed for c in flooded) and len(target.connections) <= 1, 5)
        assert all(c.peer_connection.connectionState == "closed" for c in flooded)
        assert [c.peer for c in target.connections] in ([], [peer_id + "legit"])
        # And the target still takes callers.
        assert await legit_call(url, peer_id + "later", target) < LEGIT_DEADLINE


async def test_offer_flood_from_one_id(
    url: str, peer_id: str, flood_sdp: str, caplog: pytest.LogCaptureFixture
) -> None:
    """300 never-completing OFFERs from one id: capped per id, and a caller connects within 5 s."""
    await check_flood(url, peer_id, flood_sdp, [peer_id + "x"], caplog)


async def test_offer_flood_from_many_ids(
    url: str, peer_id: str, flood_sdp: str, caplog: pytest.LogCaptureFixture
) -> None:
    """300 never-completing OFFERs from 100 ids: capped in total, a caller connects within 5 s."""
    await check_flood(url, peer_id, flood_sdp, [f"{peer_id}x{n}" for n in range(100)], caplog)


async def test_flood_never_closes_open_connections(url: str, peer_id: str, flood_sdp: str) -> None:
    """Open connections are never closed to make room; with no room left OFFERs are refused.

    A refused OFFER allocates no RTCPeerConnection.
    """
    limits = Limits(max_connections=3, max_half_open=2, max_half_open_per_peer=2)
    async with Peer(peer_id, server=url, limits=limits) as target:
        made: list[Any] = []
        new_pc = target._new_pc

        def counted() -> Any:
            made.append(new_pc())
            return made[-1]

        target._new_pc = counted  # type: ignore[method-assign]
        async with (
            Peer(peer_id + "a", server=url) as alice,
            Peer(peer_id + "b", server=url) as bob,
            Peer(peer_id + "c", server=url) as carol,
        ):
            conns = []
            for caller in (alice, bob):
                with anyio.fail_after(15):
                    conns.append(await caller.connect(peer_id, reliable=True))
                    await target.accept()
            # One slot left: the flood churns through it, the open ones stay.
            await flood(url, peer_id, flood_sdp, [peer_id + "x"], 1.0)
            assert len(target.half_open_connections()) == 1
            assert all(c.open for c in conns)
            # A real caller takes the last slot (closing the flood's entry) ...
            with anyio.fail_after(LEGIT_DEADLINE):
                conns.append(await carol.connect(peer_id, reliable=True))
                await target.accept()
            # ... and now every OFFER is refused before anything is allocated.
            before = len(made)
            await flood(url, peer_id, flood_sdp, [peer_id + "y"], 0.5)
            assert len(made) == before
            assert target.half_open_connections() == []
            for conn in conns:
                assert conn.open
                await conn.send("still here")
            await wait_until(lambda: all(pc.connectionState == "closed" for pc in made[2:-1]), 10)


def test_half_open_defaults() -> None:
    """Half-open incoming connections time out well before negotiation does, and are capped."""
    timeouts, limits = Timeouts(), Limits()
    assert timeouts.half_open == 10.0 < timeouts.negotiation
    assert 0 < limits.max_half_open_per_peer < limits.max_half_open < limits.max_connections
