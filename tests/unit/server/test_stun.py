"""The broker's STUN binding responder (transports.stun): golden vectors, hostile input.

On a real UDP socket: tests/integration/server/test_stun.py.
"""

from __future__ import annotations

import struct

import pytest
from aioice import stun
from hypothesis import given
from hypothesis import strategies as st
from peerpy_server.transports.stun import parse_request, respond

# RFC 5769 §2.1: a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
# USERNAME, MESSAGE-INTEGRITY and FINGERPRINT.
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e207465737420636c69656e74"
    "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf"
)
TRANSACTION = bytes.fromhex("b7e7a701bc34d686fa87dfae")
# RFC 5769 §2.3: XOR-MAPPED-ADDRESS of [2001:db8:1234:5678:11:2233:4455:6677]:32853.
RFC5769_XOR_MAPPED_V6 = bytes.fromhex(
    "0020001400 02a147 0113a9faa5d3f179bc25f4b5bed2b9d9".replace(" ", "")
)


def attributes(message: bytes) -> dict[int, bytes]:
    """The raw attributes (type -> value) of a STUN message."""
    found, offset = {}, 20
    while offset < len(message):
        kind, length = struct.unpack_from("!HH", message, offset)
        found[kind] = message[offset + 4 : offset + 4 + length]
        offset += 4 + length + (-length % 4)
    return found


def test_parses_the_rfc5769_request_and_checks_its_fingerprint() -> None:
    request = parse_request(RFC5769_REQUEST)
    assert request is not None
    assert request.transaction_id == TRANSACTION
    assert request.unknown_required == ()
    tampered = bytearray(RFC5769_REQUEST)
    tampered[30] ^= 1  # inside SOFTWARE: the FINGERPRINT no longer matches
    assert parse_request(bytes(tampered)) is None


def test_answers_with_the_rfc5769_xor_mapped_address() -> None:
    reply = respond(RFC5769_REQUEST, ("2001:db8:1234:5678:11:2233:4455:6677", 32853))
    assert reply is not None
    assert reply[:2] == b"\x01\x01"
    assert reply[4:20] == RFC5769_REQUEST[4:20]  # cookie and transaction id echoed
    xor_mapped = attributes(reply)[0x0020]
    assert struct.pack("!HH", 0x0020, len(xor_mapped)) + xor_mapped == RFC5769_XOR_MAPPED_V6


@pytest.mark.parametrize(
    ("host", "expected"),
    [("203.0.113.7", "203.0.113.7"), ("::ffff:198.51.100.4", "198.51.100.4"), ("::1", "::1")],
)
def test_aioice_reads_the_response(host: str, expected: str) -> None:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    reply = respond(bytes(request), (host, 40000))
    assert reply is not None
    response = stun.parse_message(reply)  # checks our FINGERPRINT too
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == (expected, 40000)
    assert response.attributes["SOFTWARE"] == "peerpy-server"


def test_unknown_comprehension_required_attribute_gets_420() -> None:
    header = struct.pack("!HHI12s", 0x0001, 8, 0x2112A442, TRANSACTION)
    reply = respond(header + struct.pack("!HHI", 0x7777, 4, 0), ("203.0.113.7", 1))
    assert reply is not None
    assert reply[:2] == b"\x01\x11"
    found = attributes(reply)
    assert found[0x0009][2:4] == b"\x04\x14"  # class 4, number 20
    assert found[0x000A] == b"\x77\x77"


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"hello",
        RFC5769_REQUEST[:-4],  # truncated
        RFC5769_REQUEST + b"\0\0\0\0",  # length field disagrees
        b"\x01\x01" + RFC5769_REQUEST[2:],  # a response, not a request
        b"\x00\x11" + RFC5769_REQUEST[2:],  # an indication
        b"\x00\x03" + RFC5769_REQUEST[2:],  # another method (Allocate)
        RFC5769_REQUEST[:4] + b"\0\0\0\0" + RFC5769_REQUEST[8:],  # no magic cookie
        struct.pack("!HHI12s", 1, 4000, 0x2112A442, TRANSACTION) + bytes(4000),  # too large
    ],
)
def test_stays_silent_on_anything_else(datagram: bytes) -> None:
    assert respond(datagram, ("203.0.113.7", 1)) is None


@given(st.binary(max_size=200))
def test_never_raises_on_garbage(data: bytes) -> None:
    reply = respond(data, ("203.0.113.7", 1))
    assert reply is None or reply[:2] in (b"\x01\x01", b"\x01\x11")


@given(st.binary(max_size=120))
def test_never_raises_on_garbage_after_a_valid_header(body: bytes) -> None:
    header = struct.pack("!HHI12s", 1, len(body), 0x2112A442, TRANSACTION)
    respond(header + body, ("203.0.113.7", 1))
