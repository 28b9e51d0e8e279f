"""Bad input to our broker: only the offender is cut off, others carry on, memory is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from ...helpers.http import http_request
from ...helpers.signaling import client, peer_client
from ...helpers.targets import Target, run_ours

pytestmark = pytest.mark.anyio

HANDSHAKE = (
    "GET /myapp/peerjs?key=peerjs&id={id}&token=t HTTP/1.1\r\nHost: x\r\n"
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@contextlib.asynccontextmanager
async def deaf_client(target: Target, peer_id: str) -> AsyncIterator[socket.socket]:
    """A registered WebSocket client that never reads again (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", target.port))
    await loop.sock_sendall(sock, HANDSHAKE.format(id=peer_id).encode())
    received = b""
    while b'{"type":"OPEN"}' not in received:
        received += await asyncio.wait_for(loop.sock_recv(sock, 4096), 3)
    try:
        yield sock
    finally:
        sock.close()


async def assert_relay_works(target: Target) -> None:
    """Two fresh clients can still exchange a message."""
    async with peer_client(target, "ok1") as one, peer_client(target, "ok2") as two:
        await one.send({"type": "ANSWER", "dst": "ok2", "payload": "fine"})
        assert (await two.recv())["payload"] == "fine"


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "[1, 2]",
        '"text"',
        "{}",
        '{"type": 5}',
        '{"type": "OFFER", "dst": 12}',
        '{"type": "OFFER", "src": ["x"], "dst": "b"}',
        b"\xff\xfe\x00binary",
        "",
    ],
)
async def test_bad_frames_are_logged_and_ignored(
    frame: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed frame is logged; the sender stays connected and its next message is relayed."""
    caplog.set_level(logging.WARNING, "peerpy_server")
    async with (
        run_ours() as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.send(frame)
        await alice.send({"type": "ANSWER", "dst": "bob", "payload": "after"})
        assert (await bob.recv())["payload"] == "after"
        assert "bad frame" in caplog.text


async def test_oversized_message_cuts_only_the_sender() -> None:
    """A message over max_message_size closes that client with 1009; others are unaffected."""
    async with (
        run_ours(max_message_size=1000) as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.send({"type": "OFFER", "dst": "bob", "payload": "x" * 2000})
        assert await alice.closed() == 1009
        assert await bob.silent(0.2)
        await assert_relay_works(target)


async def test_fragmented_message_is_reassembled() -> None:
    """A message sent in several WebSocket fragments is relayed whole."""
    async with (
        run_ours() as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.ws.send(iter(['{"type":"ANSWER",', '"dst":"bob",', '"payload":8}']))
        assert (await bob.recv())["payload"] == 8


async def test_slow_reader_is_cut_off_and_sender_told() -> None:
    """A client that never reads is cut off past the buffer limit; the sender gets LEAVE."""
    async with (
        run_ours(max_write_buffer=64 * 1024) as target,
        peer_client(target, "fast") as fast,
        deaf_client(target, "deaf"),
    ):
        assert target.broker is not None
        payload = "y" * 1000
        got: dict[str, object] | None = None
        for _ in range(3000):  # at most ~3 MB pushed at the deaf client
            await fast.send({"type": "CANDIDATE", "dst": "deaf", "payload": payload})
            if "deaf" not in target.broker.realm:
                break
        got = await fast.recv()
        assert got == {"type": "LEAVE", "src": "deaf", "dst": "fast"}
        assert "deaf" not in target.broker.realm
        await assert_relay_works(target)


async def test_connection_flood_is_bounded() -> None:
    """Connections past max_connections are refused, silent ones time out, service continues."""
    async with run_ours(max_connections=50, handshake_timeout=0.5) as target:
        assert target.broker is not None
        socks = []
        try:
            for _ in range(120):
                sock = socket.create_connection(("127.0.0.1", target.port))
                socks.append(sock)
                assert target.broker.connections <= 50
            await asyncio.sleep(0.1)
            assert target.broker.connections <= 50
            await asyncio.sleep(1.0)  # handshake_timeout passes
            assert target.broker.connections == 0
        finally:
            for sock in socks:
                sock.close()
        await assert_relay_works(target)


async def test_oversized_request_is_closed() -> None:
    """A request with more than 16 KiB of headers is dropped without a response."""
    async with run_ours() as target:
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        writer.write(b"GET /myapp HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 4000 + b"\r\n")
        for _ in range(5):
            writer.write(b"X-More: " + b"b" * 4000 + b"\r\n")
        assert await asyncio.wait_for(reader.read(-1), 3) == b""
        writer.close()
        status, _, _ = await http_request(target.port, "GET", "/myapp")
        assert status == 200


async def test_queue_is_bounded_but_sender_still_gets_expire() -> None:
    """Past max_queue_messages messages are dropped, and the sender still gets one EXPIRE."""
    async with (
        run_ours(max_queue_messages=5, expire_timeout=0.5) as target,
        peer_client(target, "alice") as alice,
    ):
        assert target.broker is not None
        for i in range(40):
            await alice.send({"type": "CANDIDATE", "dst": "carol", "payload": i})
        await alice.silent(0.1)
        assert target.broker.realm.queued("carol") == 5
        assert await alice.recv() == {"type": "EXPIRE", "src": "carol", "dst": "alice"}
        assert await alice.silent(0.6)
        assert target.broker.realm.queued_size == 0


async def test_unresponsive_socket_is_closed_by_pings() -> None:
    """A socket that answers no WebSocket ping is closed; one that answers stays."""
    async with (
        run_ours(ping_interval=0.2) as target,
        peer_client(target, "alive") as alive,
        deaf_client(target, "deaf"),
    ):
        assert target.broker is not None
        await asyncio.sleep(1.0)
        assert "deaf" not in target.broker.realm
        assert "alive" in target.broker.realm
        assert await alive.silent(0.05)


async def test_graceful_shutdown_closes_clients_with_1001() -> None:
    """Closing the broker closes every WebSocket with 1001 (going away)."""
    async with run_ours() as target, client(target.ws_url(id="a", token="t")) as c:
        assert await c.recv() == {"type": "OPEN"}
        assert target.broker is not None
        await target.broker.aclose()
        assert await c.closed() == 1001
        assert target.broker.connections == 0


async def test_invalid_id_is_refused_by_default() -> None:
    """Ours refuses ids outside the PeerJS client rule, unless configured like peer."""
    async with run_ours() as target, client(target.ws_url(id="we!rd id", token="t")) as c:
        assert await c.recv() == {"type": "ERROR", "payload": {"msg": 'ID "we!rd id" is invalid'}}
    async with (
        run_ours(id_pattern=None) as target,
        client(target.ws_url(id="we!rd", token="t")) as c,
    ):
        assert await c.recv() == {"type": "OPEN"}


def _masked(opcode: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A client frame (masked, final) as RFC 6455 lays it out."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
async def test_frames_split_anywhere_are_parsed(chunk: int) -> None:
    """Frames cut at any byte boundary, mixed with a ping, all arrive in order."""
    async with run_ours() as target, peer_client(target, "bob") as bob:
        loop = asyncio.get_running_loop()
        async with deaf_client(target, "alice") as sock:
            stream = b"".join(
                [
                    _masked(1, b'{"type":"ANSWER","dst":"bob","payload":1}'),
                    _masked(9, b"ping"),
                    _masked(2, b'{"type":"ANSWER","dst":"bob","payload":"' + b"z" * 300 + b'"}'),
                    _masked(1, b'{"type":"ANSWER","dst":"bob","payload":'),  # bad JSON
                    _masked(1, b'{"type":"ANSWER","dst":"bob","payload":3}'),
                ]
            )
            for i in range(0, len(stream), chunk):
                await loop.sock_sendall(sock, stream[i : i + chunk])
                await asyncio.sleep(0)
            assert (await bob.recv())["payload"] == 1
            assert (await bob.recv())["payload"] == "z" * 300
            assert (await bob.recv())["payload"] == 3
