"""The built-in WebSocket transport (transports.websocket) under bad input and at speed.

Bad input: only the offender is cut off, others carry on, memory is bounded.
The speed tricks change nothing on the wire: frames gathered per read reach
each socket in one write, byte for byte as if written one by one, in order
with control frames; a client already behind is still cut off at once; the
read buffer shared by every connection never mixes their bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from peerpy_protocol.messages import RelayType, serialize_relay
from peerpy_server import Broker, BrokerConfig
from peerpy_server.transports.websocket import TcpSession
from websockets.speedups import apply_mask

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


# -- TcpSession with fake transports ----------------------------------------


class FakeTransport:
    """Records writes; ``backlog`` bytes are "unsent"; past ``high`` it pauses the protocol."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.backlog = 0
        self.high = 1 << 20
        self.protocol: TcpSession | None = None
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        if self.backlog:  # behind already: everything stays in the buffer
            self.backlog += len(data)
            if self.backlog > self.high and self.protocol is not None:
                self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high if high is not None else self.high

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def client_frame(message: dict[str, Any] | str) -> bytes:
    """A masked client text frame."""
    body = (message if isinstance(message, str) else json.dumps(message)).encode()
    mask = os.urandom(4)
    if len(body) < 126:
        header = bytes((0x81, 0x80 | len(body)))
    else:
        header = struct.pack("!BBH", 0x81, 0xFE, len(body))
    return header + mask + apply_mask(body, mask)


def server_frame(text: str) -> bytes:
    """An unmasked server text frame, as the broker wrote them one by one."""
    body = text.encode()
    if len(body) < 126:
        return bytes((0x81, len(body))) + body
    if len(body) < 65536:
        return struct.pack("!BBH", 0x81, 126, len(body)) + body
    return struct.pack("!BBQ", 0x81, 127, len(body)) + body


def read(connection: TcpSession, data: bytes) -> None:
    """Deliver ``data`` the way asyncio does to a buffered protocol."""
    while data:
        buffer = connection.get_buffer(-1)
        chunk, data = data[: len(buffer)], data[len(buffer) :]
        buffer[: len(chunk)] = chunk
        connection.buffer_updated(len(chunk))


class Harness:
    """A started broker (its own socket unused) and TcpSessions on fake transports."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connections: list[TcpSession] = []

    def connect(self, peer_id: str) -> tuple[TcpSession, FakeTransport]:
        """A TcpSession through the handshake, its writes so far cleared."""
        connection = TcpSession(self.broker, self.broker.gathering)
        self.connections.append(connection)
        transport = FakeTransport()
        transport.protocol = connection
        connection.connection_made(transport)  # type: ignore[arg-type]
        request = (
            f"GET /peerjs?key=peerjs&id={peer_id}&token=t HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        read(connection, request.encode())
        assert transport.writes[-1] == server_frame('{"type":"OPEN"}')
        transport.writes.clear()
        return connection, transport


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """A harness whose fake connections are gone before the broker shuts down."""
    config = BrokerConfig(host="127.0.0.1", port=0, max_write_buffer=64 * 1024)
    async with Broker(config) as broker:
        h = Harness(broker)
        yield h
        for connection in h.connections:
            connection.connection_lost(None)


def candidate(dst: str, index: int) -> dict[str, Any]:
    return {"type": "CANDIDATE", "dst": dst, "payload": {"candidate": "c" * 200, "i": index}}


def forwarded(src: str, message: dict[str, Any]) -> str:
    return serialize_relay(RelayType(message["type"]), src, message["dst"], message["payload"])


@pytest.mark.anyio
async def test_one_read_gives_one_write_per_destination(harness: Harness) -> None:
    """Twenty frames in one read reach the partner in one write, bytes as if sent one by one."""
    _, b_out = harness.connect("b")
    a, a_out = harness.connect("a")
    messages = [candidate("b", i) for i in range(20)]
    read(a, b"".join(client_frame(m) for m in messages))
    assert b_out.writes == [b"".join(server_frame(forwarded("a", m)) for m in messages)]
    assert a_out.writes == []
    assert not harness.broker.gathering.unwritten


@pytest.mark.anyio
async def test_big_frames_and_close_keep_their_order(harness: Harness) -> None:
    """A frame past the gathering limit and a close frame come after what was gathered."""
    b, b_out = harness.connect("b")
    small = candidate("b", 1)
    big = {"type": "OFFER", "dst": "b", "payload": "x" * (70 * 1024)}
    assert b.send(forwarded("a", small))
    assert b_out.writes == []  # gathered
    assert b.send(forwarded("a", big))
    assert b_out.writes == [server_frame(forwarded("a", small)), server_frame(forwarded("a", big))]
    assert b.send(forwarded("a", small))
    b.close(1001, "bye")
    assert b_out.writes[2] == server_frame(forwarded("a", small))
    assert b_out.writes[3][:2] == b"\x88\x05"  # the close frame, last
    harness.broker.write_gathered()
    assert len(b_out.writes) == 4


@pytest.mark.anyio
async def test_client_behind_is_still_cut_off_at_once(harness: Harness) -> None:
    """With unsent bytes already buffered, frames are written at once and the cut is reported."""
    a, a_out = harness.connect("a")
    _, b_out = harness.connect("b")
    b_out.backlog = 60 * 1024  # the 64 KiB limit is 4 KiB away
    frames = [candidate("b", i) for i in range(30)]
    read(a, b"".join(client_frame(m) for m in frames))
    assert "b" not in harness.broker.realm
    assert b_out.closing
    # Written one by one until the limit passed (about 4 KiB of ~300-byte frames).
    assert 10 <= len(b_out.writes) <= 16
    assert all(w == server_frame(forwarded("a", frames[i])) for i, w in enumerate(b_out.writes))
    assert a_out.writes == [server_frame('{"type":"LEAVE","src":"b","dst":"a"}')]


@pytest.mark.anyio
async def test_shared_read_buffer_keeps_partial_frames_apart(harness: Harness) -> None:
    """A frame split across reads survives other connections reusing the read buffer."""
    a, _ = harness.connect("a")
    c, _ = harness.connect("c")
    _, b_out = harness.connect("b")
    from_a = client_frame(candidate("b", 1))
    from_c = client_frame(candidate("b", 2))
    read(a, from_a[:100])
    read(c, from_c[:7])
    read(c, from_c[7:])
    read(a, from_a[100:])
    assert b_out.writes == [
        server_frame(forwarded("c", candidate("b", 2))),
        server_frame(forwarded("a", candidate("b", 1))),
    ]


@pytest.mark.anyio
async def test_bad_frames_on_the_fast_path_are_ignored(harness: Harness) -> None:
    """Bad JSON or a bad dst among good frames is skipped; the good ones still go out, in order."""
    a, a_out = harness.connect("a")
    _, b_out = harness.connect("b")
    good = [candidate("b", i) for i in range(3)]
    data = [
        client_frame(good[0]),
        client_frame("not json"),
        client_frame('{"type":"OFFER","dst":5}'),
        client_frame(good[1]),
        client_frame('{"type":"HEARTBEAT"}'),
        client_frame(good[2]),
    ]
    read(a, b"".join(data))
    assert b_out.writes == [b"".join(server_frame(forwarded("a", m)) for m in good)]
    assert a_out.writes == []
    assert "a" in harness.broker.realm
