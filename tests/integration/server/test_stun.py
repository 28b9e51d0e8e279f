"""The broker's STUN binding responder on a real UDP socket (transports.stun).

Its parsing and answers (RFC 5769 vectors, hostile input): tests/unit/server/test_stun.py;
under a flood: test_stun_flood.py.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aioice import stun
from peerpy_server import Broker, BrokerConfig


@pytest.mark.anyio
async def test_broker_answers_stun_on_udp() -> None:
    config = BrokerConfig(host="127.0.0.1", port=0, stun_port=0)
    async with Broker(config) as broker:
        assert broker.stun_port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            request = stun.Message(
                message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
            )
            sock.sendto(bytes(request), ("127.0.0.1", broker.stun_port))
            data = await asyncio.to_thread(sock.recv, 2048)
            response = stun.parse_message(data)
            assert response.transaction_id == request.transaction_id
            assert response.attributes["XOR-MAPPED-ADDRESS"] == sock.getsockname()
    assert broker.stun_port is None  # closed with the broker


@pytest.mark.anyio
async def test_no_stun_socket_unless_asked() -> None:
    async with Broker(BrokerConfig(host="127.0.0.1", port=0)) as broker:
        assert broker.stun_port is None
