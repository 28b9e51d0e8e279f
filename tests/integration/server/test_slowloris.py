"""A slowloris from one address no longer locks out the clients behind that address.

64 silent TCP connections from 127.0.0.1 fill ``max_handshakes_per_ip``; a
legitimate client from the same address then connects: the broker closes the
address's oldest handshake for it instead of refusing it.  Established
WebSockets are never closed to make room.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from ...helpers.signaling import peer_client
from ...helpers.targets import run_ours

pytestmark = pytest.mark.anyio

CAP = 64  # BrokerConfig's default max_handshakes_per_ip


async def test_a_client_behind_a_slowloris_address_still_registers() -> None:
    """With the address's 64 handshake slots held, a client from it registers and relays."""
    async with run_ours(handshake_timeout=30.0) as target:
        broker = target.broker
        assert broker is not None
        async with peer_client(target, "early") as early:  # established before the attack
            socks = []
            try:
                for _ in range(CAP + 10):
                    sock = socket.create_connection(("127.0.0.1", target.port))
                    socks.append(sock)
                await asyncio.sleep(0.3)
                assert broker.connections_from("127.0.0.1") == (CAP + 1, CAP)
                async with peer_client(target, "late") as late:
                    await late.send({"type": "OFFER", "dst": "early", "payload": 1})
                    assert (await early.recv())["src"] == "late"
                assert broker.stats.refused["handshakes-per-ip"] == 11
                # The oldest silent sockets were the ones closed; the newest still wait.
                socks[0].settimeout(2)
                assert socks[0].recv(1) == b""
                socks[-1].settimeout(0.2)
                with pytest.raises(TimeoutError):
                    socks[-1].recv(1)
            finally:
                for sock in socks:
                    sock.close()
