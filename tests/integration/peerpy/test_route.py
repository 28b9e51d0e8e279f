"""conn.route (the selected ICE pair) and ICE servers a Peer takes from its broker.

The NAT lab (tests/lab/test_netlab.py) checks routes through NATs and TURN; here,
on loopback: the route of data and media connections, its text, and the
broker's ``/ice`` answer reaching ``Peer.configuration``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from aiortc import RTCPeerConnection
from peerpy_server import Broker, BrokerConfig

from peerpy import Peer, Route
from peerpy.backends.aiortc import route_of

from .test_media import av_tracks, dial

pytestmark = pytest.mark.anyio


def test_route_text_and_relayed() -> None:
    direct = Route("host", "srflx", ("10.1.0.2", 5000), ("203.0.113.3", 6000), "udp")
    assert not direct.relayed
    assert str(direct) == "direct, 10.1.0.2:5000 ↔ 203.0.113.3:6000"
    relay = Route("relay", "prflx", ("203.0.113.1", 49200), ("203.0.113.2", 7000), "udp",
                  relay_protocol="tcp", relay_server=("203.0.113.1", 3478))  # fmt: skip
    assert relay.relayed
    assert str(relay) == "relayed via TURN 203.0.113.1:3478 (tcp)"
    theirs = Route("host", "relay", ("10.1.0.2", 5000), ("203.0.113.1", 49200), "udp")
    assert theirs.relayed
    assert str(theirs) == "relayed via the remote's TURN relay 203.0.113.1:49200"
    v6 = Route("host", "host", ("::1", 1), ("::1", 2), "udp")
    assert str(v6) == "direct, [::1]:1 ↔ [::1]:2"


async def test_no_route_before_ice_selects_a_pair() -> None:
    pc = RTCPeerConnection()
    pc.createDataChannel("x")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        assert route_of(pc) is None
    finally:
        await pc.close()


def _loopback(route: Route | None) -> Route:
    assert route is not None
    assert (route.local_type, route.remote_type) == ("host", "host")
    assert route.local_address[0] == "127.0.0.1"
    assert route.remote_address[0] == "127.0.0.1"
    assert route.protocol == "udp"
    assert route.relayed is False
    assert (route.relay_protocol, route.relay_server) == (None, None)
    return route


async def test_data_connection_route(broker_url: str, peer_id: str) -> None:
    async with (
        Peer(peer_id + "a", server=broker_url) as alice,
        Peer(peer_id + "b", server=broker_url) as bob,
    ):
        with anyio.fail_after(15):
            out = await alice.connect(peer_id + "b")
            incoming = await bob.accept()
            await incoming.wait_open()
        ours, theirs = _loopback(out.route), _loopback(incoming.route)
        assert ours.local_address == theirs.remote_address
        assert ours.remote_address == theirs.local_address
        assert str(ours).startswith("direct, 127.0.0.1:")
        await out.close()
        with anyio.fail_after(10):
            await incoming.wait_closed()
        assert out.route == ours  # the last route seen stays readable


async def test_media_connection_route(broker_url: str, peer_id: str) -> None:
    async with (
        Peer(peer_id + "a", server=broker_url) as alice,
        Peer(peer_id + "b", server=broker_url) as bob,
    ):
        out, incoming = await dial(alice, bob, av_tracks(), av_tracks())
        ours, theirs = _loopback(out.route), _loopback(incoming.route)
        assert ours.local_address == theirs.remote_address
        await out.close()


@pytest.fixture
async def ice_broker() -> AsyncIterator[Broker]:
    config = BrokerConfig(
        host="127.0.0.1",
        port=0,
        stun_port=0,
        turn_urls=("turn:127.0.0.1:3478",),
        turn_secret="s3cret",
    )
    async with Broker(config) as broker:
        yield broker


async def test_peer_without_ice_servers_asks_its_broker(
    ice_broker: Broker, peer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PEERPY_ICE_SERVERS")
    async with Peer(peer_id, server=ice_broker.url) as peer:
        stun, turn = peer.configuration.iceServers or []
        assert stun.urls == [f"stun:127.0.0.1:{ice_broker.stun_port}"]
        assert turn.urls == ["turn:127.0.0.1:3478"]
        assert turn.username is not None
        assert turn.username.endswith(f":{peer_id}")
        assert turn.credential


async def test_configured_ice_servers_win_over_the_brokers(
    ice_broker: Broker, peer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PEERPY_ICE_SERVERS="" (set by conftest) means "none", on purpose.
    async with Peer(peer_id, server=ice_broker.url) as peer:
        assert peer.configuration.iceServers == []
    monkeypatch.delenv("PEERPY_ICE_SERVERS")
    async with Peer(peer_id + "x", server=ice_broker.url, ice_servers=[]) as peer:
        assert peer.configuration.iceServers == []


async def test_broker_without_the_endpoint_leaves_none(
    node_broker_url: str, peer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PEERPY_ICE_SERVERS")
    async with Peer(peer_id, server=node_broker_url) as peer:
        assert peer.configuration.iceServers == []
