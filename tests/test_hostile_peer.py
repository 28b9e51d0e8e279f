"""A hostile remote peer speaking raw signaling cannot break a Peer."""

from __future__ import annotations

import json

import anyio
import pytest
from websockets.asyncio.client import connect

from peerpy.peer import Peer

from .helpers.brokers import peerpy_server

pytestmark = pytest.mark.anyio

GARBAGE_PAYLOADS = [
    None,
    "not an object",
    [],
    {"type": "data"},
    {"type": "data", "connectionId": "dc_x", "sdp": "not an object"},
    {"type": "data", "connectionId": "dc_x", "sdp": {"type": "offer", "sdp": "garbage"}},
    {"type": "media", "connectionId": "mc_x", "sdp": {"type": "offer", "sdp": "v=0\r\n"}},
    {"type": "data", "connectionId": "dc_y", "serialization": "nope",
     "sdp": {"type": "offer", "sdp": "v=0\r\n"}},
    {"type": "weird", "connectionId": 5},
]  # fmt: skip


async def test_garbage_signaling_is_survived(peer_id: str, peer_backend: str) -> None:
    """Malformed OFFER/ANSWER/CANDIDATE payloads are logged; real connections still work
    (on both backends: the garbage SDP reaches the backend's parser)."""
    async with peerpy_server() as url, Peer(peer_id + "b", server=url) as bob:
        ws_url = url.replace("http", "ws") + f"peerjs?key=peerjs&id={peer_id}m&token=t"
        async with connect(ws_url) as mallory:
            assert json.loads(await mallory.recv()) == {"type": "OPEN"}
            for kind in ("OFFER", "ANSWER", "CANDIDATE"):
                for payload in GARBAGE_PAYLOADS:
                    frame = {"type": kind, "dst": bob.id, "payload": payload}
                    await mallory.send(json.dumps(frame))
            # a candidate for a connection that does not exist, and a LEAVE
            await mallory.send(json.dumps({"type": "LEAVE", "dst": bob.id}))
            await anyio.sleep(0.5)
            assert bob.open
            async with Peer(peer_id + "a", server=url) as alice:
                conn = await alice.connect(bob.id or "")
                incoming = await bob.accept()
                assert conn.backend == incoming.backend == peer_backend
                await conn.send("still fine")
                assert await incoming.recv() == "still fine"
            # the garbage OFFERs left no live connection behind
            with anyio.fail_after(10):
                while any(c.peer == peer_id + "m" for c in bob.connections):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
