"""A STUN binding responder (RFC 8489), so the broker tells peers their public address.

Only the Binding method is served, without authentication, as public STUN
servers do: a Binding request gets a success response carrying the source
address it came from in XOR-MAPPED-ADDRESS (plus SOFTWARE and FINGERPRINT).
A request with a comprehension-required attribute this server does not know
gets a 420 error listing them (RFC 8489 §6.3.1.1).  Anything else (responses,
indications, other methods, datagrams that are not STUN) is dropped silently:
a UDP server must not answer what it does not understand, or it becomes a
reflector.

What it does answer is still a reflection: a 20-byte Binding request from a
forged source address gets a 60-70-byte answer sent to that address (3-3.5
times the request).  So each source address gets a token bucket
(:class:`~peerpy_server.core.limiter.SourceLimiter`: :data:`SOURCE_RATE`
answers per second on average, :data:`SOURCE_BURST` at once); past it,
requests are dropped unanswered and counted
(``refusals_total{reason="stun-rate-limit"}``), so one address can be sent
at most about :data:`SOURCE_RATE` x 70 bytes per second, whoever forges it.
The table of buckets is bounded (:data:`MAX_SOURCES`): a bucket that has
refilled carries no state and is forgotten first; when every tracked source is
still active, a new source is not answered (``stun-sources-full``) until one
refills.

The protocol core is sans-I/O: :func:`respond` takes a datagram and the
sender's address and returns the reply bytes or ``None``.
:class:`StunProtocol` is the asyncio glue and :func:`serve_stun` opens the
socket.
"""

from __future__ import annotations

import asyncio
import binascii
import ipaddress
import logging
import struct
from typing import TYPE_CHECKING, Final, cast

import attrs

from ..core.limiter import SourceLimiter

if TYPE_CHECKING:
    from ..core.stats import Stats
    from ..logs import WarningLimiter

__all__ = ["StunProtocol", "parse_request", "respond", "serve_stun", "stun_limiter"]

logger = logging.getLogger("peerpy_server.stun")

MAGIC_COOKIE: Final = 0x2112A442
HEADER: Final = struct.Struct("!HHI12s")
BINDING_REQUEST: Final = 0x0001
BINDING_SUCCESS: Final = 0x0101
BINDING_ERROR: Final = 0x0111
XOR_MAPPED_ADDRESS: Final = 0x0020
ERROR_CODE: Final = 0x0009
UNKNOWN_ATTRIBUTES: Final = 0x000A
SOFTWARE: Final = 0x8022
FINGERPRINT: Final = 0x8028
#: Attributes a Binding request may carry that this server understands (or may ignore).
KNOWN_REQUIRED: Final = frozenset({0x0006, 0x0008, 0x0014, 0x0015, 0x0024, 0x0025})
FINGERPRINT_XOR: Final = 0x5354554E
SOFTWARE_NAME: Final = b"peerpy-server"
#: The largest datagram considered (a Binding request is a few dozen bytes).
MAX_REQUEST_BYTES: Final = 1500
#: Answers per second one source address gets on average (ICE sends a few
#: Binding requests per server and candidate; a NAT hides many clients).
SOURCE_RATE: Final = 50.0
#: Answers one source address may get at once.
SOURCE_BURST: Final = 100
#: Most source addresses tracked at once (about 200 bytes each).
MAX_SOURCES: Final = 10_000


@attrs.frozen
class BindingRequest:
    """A parsed Binding request: its transaction id and unknown required attributes."""

    transaction_id: bytes
    unknown_required: tuple[int, ...] = ()


def parse_request(data: bytes) -> BindingRequest | None:
    """Parse a Binding request; ``None`` for anything else, malformed included."""
    if not HEADER.size <= len(data) <= MAX_REQUEST_BYTES:
        return None
    message_type, length, cookie, transaction_id = HEADER.unpack_from(data)
    if message_type != BINDING_REQUEST or cookie != MAGIC_COOKIE:
        return None
    if length % 4 or HEADER.size + length != len(data):
        return None
    unknown: list[int] = []
    offset = HEADER.size
    while offset < len(data):
        if offset + 4 > len(data):
            return None
        attr_type, attr_length = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + attr_length
        if end > len(data):
            return None
        if attr_type == FINGERPRINT:
            expected = (binascii.crc32(data[:offset]) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
            if attr_length != 4 or struct.unpack_from("!I", data, offset + 4)[0] != expected:
                return None
        elif attr_type < 0x8000 and attr_type not in KNOWN_REQUIRED:
            unknown.append(attr_type)
        offset = end + (-attr_length % 4)
    return BindingRequest(transaction_id, tuple(unknown))


def _attribute(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + b"\0" * (-len(value) % 4)


def _xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    key = struct.pack("!I", MAGIC_COOKIE)
    family = 0x01
    if isinstance(address, ipaddress.IPv6Address):
        key += transaction_id
        family = 0x02
    packed = bytes(a ^ b for a, b in zip(address.packed, key, strict=False))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + packed


def _message(message_type: int, transaction_id: bytes, attributes: bytes) -> bytes:
    """A message with SOFTWARE and FINGERPRINT appended to ``attributes``."""
    body = attributes + _attribute(SOFTWARE, SOFTWARE_NAME)
    header = HEADER.pack(message_type, len(body) + 8, MAGIC_COOKIE, transaction_id)
    crc = (binascii.crc32(header + body) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
    return header + body + _attribute(FINGERPRINT, struct.pack("!I", crc))


def respond(data: bytes, addr: tuple[str, int]) -> bytes | None:
    """The reply to datagram ``data`` from ``addr``, or ``None`` to stay silent."""
    request = parse_request(data)
    if request is None:
        return None
    tid = request.transaction_id
    if request.unknown_required:
        reason = b"Unknown Attribute"
        error = _attribute(ERROR_CODE, struct.pack("!HBB", 0, 4, 20) + reason)
        listed = b"".join(struct.pack("!H", a) for a in request.unknown_required[:16])
        return _message(BINDING_ERROR, tid, error + _attribute(UNKNOWN_ATTRIBUTES, listed))
    mapped = _attribute(XOR_MAPPED_ADDRESS, _xor_address(addr[0], addr[1], tid))
    return _message(BINDING_SUCCESS, tid, mapped)


def stun_limiter() -> SourceLimiter:
    """The responder's buckets (:data:`SOURCE_RATE`, :data:`SOURCE_BURST`, :data:`MAX_SOURCES`)."""
    return SourceLimiter(rate=SOURCE_RATE, burst=SOURCE_BURST, max_sources=MAX_SOURCES, name="stun")


class StunProtocol(asyncio.DatagramProtocol):
    """Answers Binding requests on one UDP socket, within each source's token bucket.

    ``stats`` counts the requests refused (:class:`~peerpy_server.metrics.Stats`),
    ``warnings`` rate-limits the WARNING about them; both are the broker's.
    """

    def __init__(
        self, *, stats: Stats | None = None, warnings: WarningLimiter | None = None
    ) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0
        #: Requests left unanswered by the per-source limit.
        self.refused = 0
        self.limiter = stun_limiter()
        self._stats = stats
        self._warnings = warnings
        self._clock = asyncio.get_running_loop().time

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = respond(data, addr)
        if reply is not None and self.transport is not None:
            now = self._clock()
            refusal = self.limiter.allow(addr[0], now)
            if refusal is not None:
                self._refuse(refusal, addr[0], now)
                return
            self.transport.sendto(reply, addr)
            self.answered += 1

    def _refuse(self, reason: str, source: str, now: float) -> None:
        self.refused += 1
        if self._stats is not None:
            self._stats.refuse(reason)
        if self._warnings is not None:
            self._warnings.warning(
                logger, reason, now, "STUN requests from %s over the limit; not answered", source
            )

    def error_received(self, exc: Exception) -> None:
        logger.debug("STUN socket error: %s", exc)


async def serve_stun(
    host: str | None,
    port: int,
    *,
    stats: Stats | None = None,
    warnings: WarningLimiter | None = None,
) -> asyncio.DatagramTransport:
    """Open the STUN socket on ``host`` (``None``: every IPv4 and IPv6 address) and ``port``.

    ``stats`` and ``warnings`` (the broker's) count and log the requests the
    per-source limit leaves unanswered.  The caller closes the returned transport.
    """
    loop = asyncio.get_running_loop()

    def protocol() -> StunProtocol:
        return StunProtocol(stats=stats, warnings=warnings)

    try:
        transport, _ = await loop.create_datagram_endpoint(
            protocol, local_addr=(host or "::", port)
        )
    except OSError:
        if host is not None:
            raise
        # No IPv6 on this host: IPv4 only.
        transport, _ = await loop.create_datagram_endpoint(protocol, local_addr=("0.0.0.0", port))
    logger.info("STUN binding responder on UDP %s:%d", host or "*", port)
    return transport
