"""A Peer's ICE servers from its broker: behind a load balancer, refused once, kept fresh.

Real brokers (a cluster on a real ``redis-server`` where it matters) and real
Peers; the load balancer is a round-robin TCP proxy on loopback that sends each
new connection to the next broker, so a Peer's WebSocket and its ``GET /ice``
land on different instances, as behind a real one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from peerpy_server import Broker, BrokerConfig

from peerpy import Peer

from ...helpers.redis import running_redis
from ...helpers.targets import run_cluster

pytestmark = pytest.mark.anyio

SECRET = "s3cret"
#: Never contacted: the tests look at the credentials, not at TURN traffic.
TURN = {"turn_urls": ("turn:127.0.0.1:9",), "turn_secret": SECRET}


@contextlib.asynccontextmanager
async def round_robin(ports: Sequence[int]) -> AsyncIterator[int]:
    """A TCP proxy on 127.0.0.1 sending each new connection to the next of ``ports``."""
    turn = [0]

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = ports[turn[0] % len(ports)]
        turn[0] += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def turn_of(peer: Peer) -> tuple[float, str, str]:
    """The expiry, username and credential of the TURN server new connections use."""
    [server] = [s for s in peer.configuration.iceServers or [] if s.username]
    assert server.username is not None
    assert isinstance(server.credential, str)
    return float(server.username.partition(":")[0]), server.username, server.credential


def signed(username: str) -> str:
    return base64.b64encode(
        hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    ).decode()


@pytest.fixture(autouse=True)
def _ice_from_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEERPY_ICE_SERVERS")  # "none configured": ask the broker


async def test_behind_a_load_balancer_the_ice_request_reaches_another_instance(
    peer_id: str,
) -> None:
    """WebSocket on instance A, GET /ice on instance B: B knows the id through Redis."""
    with running_redis() as redis_server:
        async with (
            run_cluster(redis_server.url, size=2, **TURN) as target,
            round_robin(target.ports) as port,
            Peer(peer_id, server=f"http://127.0.0.1:{port}/myapp") as peer,
        ):
            assert target.brokers[0].realm.client(peer_id) is not None  # WebSocket on A
            _, username, credential = turn_of(peer)
            assert username.endswith(f":{peer_id}")
            assert credential == signed(username)


async def test_a_refused_ice_request_is_a_warning_and_is_retried_once(
    peer_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a balancer over two brokers that share nothing, /ice first reaches the one
    that does not know the peer: WARNING, one retry, which reaches the right one."""
    config = BrokerConfig(host="127.0.0.1", port=0, path="/myapp", **TURN)
    async with (
        Broker(config) as one,
        Broker(config) as other,
        round_robin([one.port, other.port]) as port,
    ):
        with caplog.at_level(logging.WARNING, logger="peerpy"):
            async with Peer(peer_id, server=f"http://127.0.0.1:{port}/myapp") as peer:
                assert one.realm.client(peer_id) is not None
                _, username, _ = turn_of(peer)
                assert username.endswith(f":{peer_id}")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("HTTP 401" in line and "retrying once" in line for line in warnings), warnings


async def test_turn_credentials_are_refreshed_before_they_expire(peer_id: str) -> None:
    """--turn-ttl 3: once the first credentials have expired, the ones new connections
    would use are fresh, and correctly signed."""
    config = BrokerConfig(host="127.0.0.1", port=0, turn_ttl=3, **TURN)
    async with Broker(config) as broker, Peer(peer_id, server=broker.url) as peer:
        first_expiry, first, _ = turn_of(peer)
        await asyncio.sleep(first_expiry + 0.1 - time.time())  # the first ones expired
        expiry, username, credential = turn_of(peer)
        assert username != first
        assert expiry > time.time()
        assert credential == signed(username)
