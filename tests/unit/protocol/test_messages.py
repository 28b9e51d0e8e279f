"""The signaling message value objects parse and serialize PeerJS frames."""

from __future__ import annotations

import pytest
from peerpy_protocol.messages import (
    Heartbeat,
    IdTaken,
    Open,
    Relay,
    RelayType,
    ServerErrorMessage,
    Unknown,
    parse,
    serialize,
)

from peerpy.exceptions import ProtocolError


def test_parse_server_messages() -> None:
    """The broker's replies parse into their classes with their texts."""
    assert parse('{"type":"OPEN"}') == Open()
    assert parse('{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}') == IdTaken("ID is taken")
    error = '{"type":"ERROR","payload":{"msg":"Invalid key provided"}}'
    assert parse(error) == ServerErrorMessage("Invalid key provided")
    assert parse(b'{"type":"HEARTBEAT"}') == Heartbeat()


def test_relay_round_trip_keeps_peer_key_order() -> None:
    """Relayed messages serialize as type, src, dst, payload, like peer 1.0.2."""
    frame = '{"type":"OFFER","src":"a","dst":"b","payload":{"sdp":{"type":"offer"}}}'
    message = parse(frame)
    assert message == Relay(RelayType.OFFER, "a", "b", {"sdp": {"type": "offer"}})
    assert serialize(message) == frame


def test_absent_fields_are_left_out() -> None:
    """EXPIRE has no payload on the wire, as peer sends it."""
    message = Relay(RelayType.EXPIRE, src="carol", dst="alice")
    assert serialize(message) == '{"type":"EXPIRE","src":"carol","dst":"alice"}'


def test_unknown_type_is_kept_not_raised() -> None:
    """An unknown type is returned for the caller to ignore, as PeerJS does."""
    assert parse('{"type":"HELLO","x":1}') == Unknown("HELLO")


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1,2]", '"OPEN"', "{}", '{"type":5}', '{"type":"OFFER","dst":5}', b"\xff\xfe"],
)
def test_malformed_frames_raise_protocol_error(frame: str | bytes) -> None:
    """Garbage raises ProtocolError, never another exception."""
    with pytest.raises(ProtocolError):
        parse(frame)


def test_protocol_core_imports_no_io_library() -> None:
    """The sans-I/O core pulls in neither anyio, aiortc nor websockets."""
    import subprocess
    import sys

    code = (
        "import sys, peerpy_protocol.messages, peerpy_protocol.ids, peerpy.exceptions;"
        "bad = [m for m in ('anyio', 'aiortc', 'websockets', 'asyncio') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
