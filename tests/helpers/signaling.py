"""A raw PeerJS signaling client: JSON frames over a WebSocket, no logic of its own.

The broker tests script PeerJS transcripts with it (what a client sends, what
the broker answers), against every broker target (tests/helpers/targets.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .targets import Target


class Client:
    """A raw PeerJS signaling client: JSON frames over a WebSocket, no logic."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def recv_raw(self, timeout: float = 3.0) -> str | bytes:
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        raw = await self.recv_raw(timeout)
        result: dict[str, Any] = json.loads(raw)
        return result

    async def silent(self, duration: float = 0.4) -> bool:
        """True if nothing arrives (and the socket stays open) for ``duration`` seconds."""
        try:
            await asyncio.wait_for(self.ws.recv(), duration)
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes on Python 3.10
            return True
        except ConnectionClosed:
            return False
        return False

    async def closed(self, timeout: float = 3.0) -> int | None:
        """Wait until the socket closes, skipping messages; return the close code."""

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await self.ws.recv()

        await asyncio.wait_for(drain(), timeout)
        await self.ws.wait_closed()
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    """Connect a raw client (no compression, websockets' own pings off)."""
    ws = await connect(url, compression=None, ping_interval=None, open_timeout=5, close_timeout=2)
    try:
        yield Client(ws)
    finally:
        await ws.close()


@contextlib.asynccontextmanager
async def peer_client(target: Target, peer_id: str, token: str = "tok") -> AsyncIterator[Client]:
    """A client registered as ``peer_id``; its OPEN is already consumed."""
    async with client(target.ws_url(id=peer_id, token=token)) as c:
        assert await c.recv() == {"type": "OPEN"}
        yield c
