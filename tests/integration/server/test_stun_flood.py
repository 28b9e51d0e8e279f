"""The broker's STUN responder under a flood from one source: a bounded reflector.

A real broker (``stun_port=0``) on 127.0.0.1 gets a bounded burst of valid
Binding requests from one UDP socket, as a reflection attack forging a
victim's address would send them.  Only that source's token bucket of answers
comes back; another source is still answered at once; ``/metrics`` counts the
requests left unanswered.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

import pytest
from peerpy_server import Broker, BrokerConfig

from ...helpers.http import http_request

pytestmark = pytest.mark.anyio

#: Requests sent by the flooder (a bounded loop, about 40 KB).
FLOOD = 2000
#: The per-source bucket: SOURCE_BURST answers at once, SOURCE_RATE per second.
BURST, RATE = 100, 50.0


def binding_request() -> bytes:
    """A 20-byte Binding request (no attributes), as a reflection attacker sends it."""
    return struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))


def replies(sock: socket.socket, quiet: float = 0.3) -> int:
    """Count the datagrams ``sock`` receives until none arrives for ``quiet`` seconds."""
    sock.settimeout(quiet)
    count = 0
    while True:
        try:
            sock.recv(2048)
        except TimeoutError:
            return count
        count += 1


def flood(port: int, source: str, n: int) -> tuple[int, float]:
    """Send ``n`` Binding requests from ``source``; return (answers received, seconds taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind((source, 0))
        start = time.monotonic()
        for i in range(n):
            sock.sendto(binding_request(), ("127.0.0.1", port))
            if i % 50 == 49:
                time.sleep(0.002)  # paced a little, so the broker's socket buffer keeps up
        elapsed = time.monotonic() - start
        return replies(sock), elapsed


async def test_a_flood_from_one_source_gets_only_its_bucket_of_answers() -> None:
    """2 000 requests from one address: at most burst + rate x time answered; others unaffected."""
    config = BrokerConfig(host="127.0.0.1", port=0, stun_port=0)
    async with Broker(config) as broker:
        port = broker.stun_port
        assert port
        # The flood runs in a thread: the broker answers on this event loop meanwhile.
        answered, elapsed = await asyncio.to_thread(flood, port, "127.0.0.3", FLOOD)
        bound = BURST + RATE * (elapsed + 0.3) + 5
        assert BURST <= answered <= bound, (answered, elapsed)
        # Another source is answered at once, its bucket untouched by the flood.
        other, _ = await asyncio.to_thread(flood, port, "127.0.0.4", 3)
        assert other == 3
        status, _, body = await http_request(broker.port, "GET", "/metrics")
        assert status == 200
        metric = 'peerpy_broker_refusals_total{reason="stun-rate-limit"}'
        samples = dict(
            line.rsplit(" ", 1) for line in body.decode().splitlines() if line.startswith(metric)
        )
        refused = float(samples[metric])
        # Each request read was answered or refused; the kernel may drop a few unread.
        assert FLOOD // 2 <= answered + refused <= FLOOD, (answered, refused)


async def test_a_source_is_answered_again_once_its_bucket_refills() -> None:
    """After the flood, the same address is answered again within a second (rate 50/s)."""
    config = BrokerConfig(host="127.0.0.1", port=0, stun_port=0)
    async with Broker(config) as broker:
        port = broker.stun_port
        assert port
        await asyncio.to_thread(flood, port, "127.0.0.5", BURST * 3)
        await asyncio.sleep(0.5)  # 25 tokens back
        answered, _ = await asyncio.to_thread(flood, port, "127.0.0.5", 10)
        assert answered == 10
