"""The signaling message value objects parse and serialize PeerJS frames.

``parse_for_relay`` (the broker's fast path) gives what ``parse`` +
``serialize_relay`` give: same frames out, same errors.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from peerpy_protocol.messages import (
    Heartbeat,
    IdTaken,
    Open,
    Relay,
    RelayType,
    ServerErrorMessage,
    Unknown,
    parse,
    parse_for_relay,
    serialize,
    serialize_relay,
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
