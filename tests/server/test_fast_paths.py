"""The broker's speed tricks change nothing on the wire.

``parse_for_relay`` gives what ``parse`` + ``serialize_relay`` give (same
frames out, same errors); frames gathered per read reach each socket in one
write, byte for byte as if written one by one, in order with control frames;
a client already behind is still cut off at once; the read buffer shared by
every connection never mixes their bytes.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from peerpy_protocol.messages import (
    Relay,
    RelayType,
    parse,
    parse_for_relay,
    serialize,
    serialize_relay,
)
from peerpy_server import Broker, BrokerConfig
from peerpy_server.transports.websocket import TcpSession
from websockets.speedups import apply_mask

from peerpy.exceptions import ProtocolError

# -- parse_for_relay ----------------------------------------------------------

CORPUS: list[str | bytes] = [
    '{"type":"OFFER","dst":"b","payload":{"sdp":"v=0"}}',
    '{"type":"ANSWER","src":"spoofed","dst":"b","payload":1,"extra":[1]}',
    '{"payload":null,"dst":"b","type":"CANDIDATE","src":null}',
    '{"type":"LEAVE","dst":"b"}',
    '{"type":"LEAVE"}',
    '{"type":"EXPIRE","payload":"x"}',
    '{"type":"CANDIDATE","dst":"é✓","payload":{"candidate":"ü","n":1.5e300}}',
    '{"type":"OFFER","dst":5,"payload":1}',
    '{"type":"OFFER","src":["a"],"dst":5}',
    '{"type":"OFFER","src":7,"dst":"b"}',
    '{"type":"OFFER","dst":null,"payload":false}',
    '{"type":"OFFER","dst":"b","payload":123456789012345678901234567890}',
    '{"type":"HEARTBEAT"}',
    '{"type":"OPEN"}',
    '{"type":"ID-TAKEN","payload":{"msg":"m"}}',
    '{"type":"ERROR"}',
    '{"type":"HELLO","x":1}',
    '{"type":"offer","dst":"b"}',
    '{"type":["OFFER"],"dst":"b"}',
    '{"type":5}',
    "{}",
    "[1,2]",
    '"OFFER"',
    "not json",
    "",
    b"\xff\xfe",
    b'{"type":"OFFER","dst":"b","payload":"\\ud800"}',
    '{"type":"OFFER","dst":"b","payload":NaN}',
]


def outcome(frame: str | bytes, src: str) -> tuple[str, Any]:
    """What the old path did: parse, then serialize_relay with ``src`` forced."""
    try:
        message = parse(frame)
    except ProtocolError as exc:
        return "error", str(exc)
    if isinstance(message, Relay):
        forward = serialize_relay(message.type, src, message.dst, message.payload)
        return "relay", (message.type, message.dst, forward)
    return "message", message


def fast_outcome(frame: str | bytes, src: str) -> tuple[str, Any]:
    """The same through ``parse_for_relay``."""
    try:
        result = parse_for_relay(frame, src)
    except ProtocolError as exc:
        return "error", str(exc)
    if isinstance(result, tuple):
        return "relay", result
    return "message", result


@pytest.mark.parametrize("frame", CORPUS)
def test_parse_for_relay_matches_parse_and_serialize(frame: str | bytes) -> None:
    """Each corpus frame gives the same forwarded bytes, message or error text."""
    expected = outcome(frame, "me")
    assert fast_outcome(frame, "me") == expected
    if isinstance(frame, str):
        assert fast_outcome(frame.encode(), "me") == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
types = st.sampled_from([t.value for t in RelayType] + ["HEARTBEAT", "ERROR", "X"])


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(["type", "src", "dst", "payload", "other"]),
        types | json_values,
    ),
    src=st.text(min_size=1),
)
def test_parse_for_relay_matches_on_random_envelopes(fields: dict[str, Any], src: str) -> None:
    """Random envelopes (any key order, any value types) give identical outcomes."""
    frame = json.dumps(fields, ensure_ascii=False)
    assert fast_outcome(frame, src) == outcome(frame, src)


def test_serialize_falls_back_to_json_for_huge_integers() -> None:
    """An integer orjson cannot encode is written by the json module, not a recursion."""
    text = serialize(Relay(RelayType.OFFER, "a", "b", 2**70))
    assert text == '{"type":"OFFER","src":"a","dst":"b","payload":1180591620717411303424}'


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
