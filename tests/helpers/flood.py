"""A raw flooding client: a registered PeerJS client on a plain non-blocking socket.

The broker abuse tests (tests/faults/test_broker_abuse.py) and their benchmark
(bench/broker_abuse.py) write pre-built WebSocket frames through it, far faster
than a WebSocket library would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

__all__ = ["masked", "raw_client"]


def masked(payload: bytes) -> bytes:
    """A client text frame with an all-zero mask (so the payload is sent as is)."""
    if len(payload) < 126:
        return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload
    return bytes((0x81, 0x80 | 126)) + len(payload).to_bytes(2, "big") + b"\0\0\0\0" + payload


@contextlib.asynccontextmanager
async def raw_client(port: int, peer_id: str, path: str = "") -> AsyncIterator[socket.socket]:
    """A registered client on a plain non-blocking socket (the flooder): OPEN consumed.

    Cancelling it closes the socket.
    """
    sock = socket.socket()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        request = (
            f"GET {path}/peerjs?key=peerjs&id={peer_id}&token=t HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        received = b""
        while b'{"type":"OPEN"}' not in received:
            received += await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
        yield sock
    finally:
        sock.close()
