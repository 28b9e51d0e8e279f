"""Peer: registration, connect/accept, errors, disconnect and reconnect, hostile signaling.

And what PeerJS has (issue 13): ``connect(timeout=)``, ``connect(sdp_transform=)``,
the first ``open`` event.
"""

from __future__ import annotations

import json
import time

import anyio
import pytest
from websockets.asyncio.client import connect

from peerpy.dataconnection import DataConnection
from peerpy.exceptions import (
    ConfigurationError,
    DisconnectedError,
    EncodeError,
    InvalidIdError,
    NegotiationFailedError,
    NetworkError,
    PeerUnavailableError,
    UnavailableIdError,
    UsageError,
)
from peerpy.peer import Peer

from ...helpers.brokers import free_port, peerpy_server
from ...helpers.offers import no_candidates

pytestmark = pytest.mark.anyio


async def test_peer_gets_id_from_broker(broker_url: str) -> None:
    """Without an id, the broker assigns one and the peer is open on return."""
    async with Peer(server=broker_url) as peer:
        assert peer.open
        assert peer.id
        assert len(peer.id) >= 8


async def test_connect_exchange_and_properties(broker_url: str, peer_id: str) -> None:
    """connect() returns an open connection; both sides see label, metadata, reliable."""
    async with (
        Peer(peer_id + "a", server=broker_url) as alice,
        Peer(peer_id + "b", server=broker_url) as bob,
    ):
        conn = await alice.connect(bob.id or "", label="chat", metadata={"n": [1, 2]})
        incoming = await bob.accept()
        assert conn.open
        assert incoming.open
        assert incoming.peer == alice.id
        assert conn.peer == bob.id
        assert incoming.connection_id == conn.connection_id
        assert conn.connection_id.startswith("dc_")
        assert (incoming.label, incoming.metadata) == ("chat", {"n": [1, 2]})
        assert incoming.serialization == "binary"
        assert incoming.reliable is False
        await conn.send({"hello": "wörld", "n": 1})
        assert await incoming.recv() == {"hello": "wörld", "n": 1}
        await incoming.send(b"\x00\x01")
        assert await conn.recv() == b"\x00\x01"


async def test_unknown_peer_raises_peer_unavailable(broker_url: str, peer_id: str) -> None:
    """connect() to an id nobody holds raises peer-unavailable from connect() itself."""
    async with Peer(peer_id, server=broker_url) as peer:
        with anyio.fail_after(10), pytest.raises(PeerUnavailableError) as info:
            await peer.connect("nobody" + peer_id)
        assert info.value.type == "peer-unavailable"
        assert peer.connections == []
        # How long it waited (both brokers expire after 1 s here) and why.
        waited = float(str(info.value).split(" gave up after ")[1].split(" s ")[0])
        assert 0.5 <= waited < 10
        assert f"no peer is registered as 'nobody{peer_id}'" in str(info.value)


async def test_id_taken(broker_url: str, peer_id: str) -> None:
    """A second peer claiming a registered id gets unavailable-id."""
    async with Peer(peer_id, server=broker_url):
        with pytest.raises(UnavailableIdError) as info:
            async with Peer(peer_id, server=broker_url):
                pass
        assert info.value.type == "unavailable-id"


def test_invalid_id_is_refused_before_any_traffic() -> None:
    """Ids breaking PeerJS's rule raise invalid-id at construction."""
    for bad in ("", " a", "a  b", "a/b", "-a", "ü"):
        with pytest.raises(InvalidIdError):
            Peer(bad)


async def test_broker_down_raises_network_error() -> None:
    """No broker listening gives a NetworkError, quickly."""
    with anyio.fail_after(10), pytest.raises(NetworkError):
        async with Peer("alone", server=f"http://127.0.0.1:{free_port()}/"):
            pass


async def test_async_for_and_handlers(broker_url: str, peer_id: str) -> None:
    """Incoming connections come through async for, and through an on() handler."""
    async with (
        Peer(peer_id + "a", server=broker_url) as alice,
        Peer(peer_id + "b", server=broker_url) as bob,
    ):
        await alice.connect(bob.id or "")
        async for conn in bob:
            assert conn.peer == alice.id
            break
        seen: list[str] = []
        arrived = anyio.Event()

        def on_connection(conn: DataConnection) -> None:
            seen.append(conn.connection_id)
            arrived.set()

        bob.on("connection", on_connection)
        conn = await alice.connect(bob.id or "")
        with anyio.fail_after(5):
            await arrived.wait()
        assert seen == [conn.connection_id]


async def test_disconnect_keeps_connections_and_reconnect(broker_url: str, peer_id: str) -> None:
    """disconnect() leaves data connections up; reconnect() registers the same id again."""
    async with (
        Peer(peer_id + "a", server=broker_url) as alice,
        Peer(peer_id + "b", server=broker_url) as bob,
    ):
        conn = await alice.connect(bob.id or "")
        incoming = await bob.accept()
        await alice.disconnect()
        assert not alice.open
        with pytest.raises(DisconnectedError):
            await alice.connect(bob.id or "")
        await conn.send("still here")
        assert await incoming.recv() == "still here"
        await alice.reconnect()
        assert alice.open
        assert alice.id == peer_id + "a"
        again = await bob.connect(alice.id or "")
        await again.send(1)
        assert await (await alice.accept()).recv() == 1


async def test_list_peers(broker_url: str, peer_id: str) -> None:
    """list_peers() returns the registered ids when discovery is on."""
    async with Peer(peer_id, server=broker_url) as peer:
        assert peer_id in await peer.list_peers()


async def test_remote_vanishing_ends_iteration(broker_url: str, peer_id: str) -> None:
    """When the remote peer is destroyed mid-stream, the reader sees the close."""
    async with Peer(peer_id + "a", server=broker_url) as alice:
        async with Peer(peer_id + "b", server=broker_url) as bob:
            conn = await alice.connect(bob.id or "")
            incoming = await bob.accept()
            await incoming.send("last")
        received = []
        with anyio.fail_after(20):
            async for value in conn:
                received.append(value)
        assert received == ["last"]
        assert conn.closed


async def test_broker_restart_then_reconnect(peer_id: str) -> None:
    """Losing the broker reports network + disconnected; reconnect() works once it is back."""
    from peerpy_server import Broker, BrokerConfig

    config = BrokerConfig(host="127.0.0.1", port=free_port(), path="/")
    events: list[str] = []
    lost = anyio.Event()
    broker = Broker(config)
    await broker.__aenter__()
    try:
        async with (
            Peer(peer_id + "a", server=broker.url) as alice,
            Peer(peer_id + "b", server=broker.url) as bob,
        ):
            alice.on("error", lambda error: events.append(error.type))
            alice.on("disconnected", lambda _id: lost.set())
            conn = await alice.connect(bob.id or "")
            incoming = await bob.accept()
            await broker.aclose()
            with anyio.fail_after(10):
                await lost.wait()
            assert events == ["network"]
            assert not alice.open
            with pytest.raises(NetworkError):
                await alice.reconnect()
            await conn.send("p2p survives")
            assert await incoming.recv() == "p2p survives"
            broker = Broker(config)
            await broker.__aenter__()
            await alice.reconnect()
            await bob.reconnect()
            again = await alice.connect(bob.id or "")
            await again.send("through the new broker")
            assert await (await bob.accept()).recv() == "through the new broker"
    finally:
        await broker.aclose()


async def test_offers_beyond_max_connections_are_refused(peer_id: str) -> None:
    """A peer at Limits.max_connections refuses further OFFERs; the caller fails cleanly."""
    from peerpy.config import Limits, Timeouts

    from ...helpers.brokers import peerpy_server

    async with (
        peerpy_server() as url,
        Peer(peer_id + "b", server=url, limits=Limits(max_connections=1)) as bob,
        Peer(peer_id + "a", server=url, timeouts=Timeouts(negotiation=3)) as alice,
    ):
        first = await alice.connect(bob.id or "")
        await bob.accept()
        with pytest.raises(NegotiationFailedError):
            await alice.connect(bob.id or "")
        await first.send("first still works")
        assert len(bob.connections) == 1


async def test_auto_reconnect_after_broker_restart(peer_id: str) -> None:
    """With auto_reconnect, a peer registers again by itself once the broker is back."""
    from peerpy_server import Broker, BrokerConfig

    config = BrokerConfig(host="127.0.0.1", port=free_port(), path="/")
    broker = Broker(config)
    await broker.__aenter__()
    try:
        async with Peer(peer_id + "a", server=broker.url, auto_reconnect=True) as alice:
            lost, back = anyio.Event(), anyio.Event()
            alice.on("disconnected", lambda _id: lost.set())
            await broker.aclose()
            with anyio.fail_after(10):
                await lost.wait()
            alice.on("open", lambda _id: back.set())  # on an open peer it would run at once
            await anyio.sleep(1.5)  # a few failed attempts while the broker is down
            assert not alice.open
            broker = Broker(config)
            await broker.__aenter__()
            with anyio.fail_after(20):
                await back.wait()
            assert alice.open
            async with Peer(peer_id + "b", server=broker.url) as bob:
                conn = await bob.connect(alice.id or "")
                await conn.send("found you again")
                assert await (await alice.accept()).recv() == "found you again"
    finally:
        await broker.aclose()


async def test_no_auto_reconnect_after_disconnect(peer_id: str) -> None:
    """An explicit disconnect() is not undone by auto_reconnect."""
    from ...helpers.brokers import peerpy_server

    async with peerpy_server() as url, Peer(peer_id, server=url, auto_reconnect=True) as peer:
        await peer.disconnect()
        await anyio.sleep(1.5)
        assert not peer.open


# -- a hostile remote speaking raw signaling cannot break a Peer ---------------

GARBAGE_PAYLOADS = [
    None,
    "not an object",
    [],
    {"type": "data"},
    {"type": "data", "connectionId": "dc_x", "sdp": "not an object"},
    {"type": "data", "connectionId": "dc_x", "sdp": {"type": "offer", "sdp": "garbage"}},
    {"type": "media", "connectionId": "mc_x", "sdp": {"type": "offer", "sdp": "v=0\r\n"}},
    {"type": "data", "connectionId": "dc_y", "serialization": "nope",
     "sdp": {"type": "offer", "sdp": "v=0\r\n"}},
    {"type": "weird", "connectionId": 5},
]  # fmt: skip


async def test_garbage_signaling_is_survived(peer_id: str, peer_backend: str) -> None:
    """Malformed OFFER/ANSWER/CANDIDATE payloads are logged; real connections still work
    (on both backends: the garbage SDP reaches the backend's parser)."""
    async with peerpy_server() as url, Peer(peer_id + "b", server=url) as bob:
        ws_url = url.replace("http", "ws") + f"peerjs?key=peerjs&id={peer_id}m&token=t"
        async with connect(ws_url) as mallory:
            assert json.loads(await mallory.recv()) == {"type": "OPEN"}
            for kind in ("OFFER", "ANSWER", "CANDIDATE"):
                for payload in GARBAGE_PAYLOADS:
                    frame = {"type": kind, "dst": bob.id, "payload": payload}
                    await mallory.send(json.dumps(frame))
            # a candidate for a connection that does not exist, and a LEAVE
            await mallory.send(json.dumps({"type": "LEAVE", "dst": bob.id}))
            await anyio.sleep(0.5)
            assert bob.open
            async with Peer(peer_id + "a", server=url) as alice:
                conn = await alice.connect(bob.id or "")
                incoming = await bob.accept()
                assert conn.backend == incoming.backend == peer_backend
                await conn.send("still fine")
                assert await incoming.recv() == "still fine"
            # the garbage OFFERs left no live connection behind
            with anyio.fail_after(10):
                while any(c.peer == peer_id + "m" for c in bob.connections):  # noqa: ASYNC110
                    await anyio.sleep(0.05)


# -- connect(timeout=), connect(sdp_transform=), the first open event (issue 13)


@pytest.mark.anyio
async def test_connect_timeout(url: str, peer_id: str) -> None:
    """connect(timeout=) bounds the wait for a peer that never answers, as call() does."""
    ws_url = url.replace("http", "ws") + f"peerjs?key=peerjs&id={peer_id}g&token=t"
    async with connect(ws_url) as ghost, Peer(peer_id + "a", server=url) as alice:
        assert json.loads(await ghost.recv()) == {"type": "OPEN"}
        assert alice.timeouts.negotiation >= 30
        started = time.monotonic()
        with anyio.fail_after(20), pytest.raises(NegotiationFailedError):
            await alice.connect(peer_id + "g", timeout=1.5)
        assert 1.4 <= time.monotonic() - started < 10


@pytest.mark.anyio
async def test_connect_sdp_transform_rewrites_the_sent_offer(url: str, peer_id: str) -> None:
    """The transform sees our offer and its result is what the remote gets."""
    seen: list[str] = []

    def keep(sdp: str) -> str:
        seen.append(sdp)
        return sdp

    async with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:
        conn = await alice.connect(peer_id + "b", sdp_transform=keep, reliable=True)
        incoming = await bob.accept()
        await conn.send("through")
        assert await incoming.recv() == "through"
        assert len(seen) == 1
        assert "a=fingerprint" in seen[0]
        assert "a=candidate" in seen[0]
        # Stripping the candidates from what is sent leaves nothing to connect to.
        with anyio.fail_after(20), pytest.raises(NegotiationFailedError):
            await alice.connect(peer_id + "b", sdp_transform=no_candidates, timeout=3)
        with pytest.raises(UsageError, match="sdp_transform must return"):
            await alice.connect(peer_id + "b", sdp_transform=lambda sdp: None)  # type: ignore[arg-type,return-value]


@pytest.mark.anyio
async def test_open_event_on_first_registration(url: str, peer_id: str) -> None:
    """A handler registered before ``async with`` hears the first open, with the id."""
    peer = Peer(peer_id, server=url)
    opened: list[str] = []
    peer.on("open", opened.append)
    async with peer:
        assert opened == [peer_id]
        await peer.disconnect()
        await peer.reconnect()
        assert opened == [peer_id, peer_id]


# -- PeerJS habits that port (issue 23) ------------------------------------------


async def test_peerjs_readme_ported_line_by_line(url: str, peer_id: str) -> None:
    """PeerJS's README example, line for line: ``open`` handlers registered on an
    open peer and an open connection run at once (async handlers included)."""
    heard: list[str] = []
    got = anyio.Event()
    opened: list[str] = []
    async with Peer(peer_id + "b", server=url) as other:
        # peer.on('connection', function(conn) { conn.on('data', function(data){ ... }) })
        other.on(
            "connection", lambda conn: conn.on("data", lambda data: (heard.append(data), got.set()))
        )
        # var peer = new Peer('pick-an-id');
        async with Peer(peer_id, server=url) as peer:
            peer.on("open", opened.append)  # peer.on('open', function(id) { ... })
            assert opened == [peer_id]
            # var conn = peer.connect('another-peers-id');
            conn = await peer.connect(peer_id + "b")
            # conn.on('open', function(){ conn.send('hi!'); });
            conn.on("open", lambda: conn.send("hi!"))

            async def on_open() -> None:  # an async handler runs in the peer's task group
                await conn.send("hi again!")

            conn.on("open", on_open)
            with anyio.fail_after(10):
                while len(heard) < 2:
                    await got.wait()
                    got = anyio.Event()
    assert sorted(heard) == ["hi again!", "hi!"]


async def test_connecting_to_yourself_is_a_usage_error(url: str, peer_id: str) -> None:
    """connect() and call() to our own id fail at once, saying why; nothing is opened."""
    from peerpy.media import ToneAudioTrack

    async with Peer(peer_id, server=url) as peer:
        with anyio.fail_after(2), pytest.raises(UsageError, match="cannot connect to yourself"):
            await peer.connect(peer_id)
        with anyio.fail_after(2), pytest.raises(UsageError, match="cannot connect to yourself"):
            await peer.call(peer_id, [ToneAudioTrack()])
        assert peer.connections == []


async def test_metadata_that_is_not_json_is_an_encode_error(url: str, peer_id: str) -> None:
    """Metadata JSON cannot carry raises EncodeError (a UsageError) before any OFFER."""
    async with Peer(peer_id, server=url) as peer:
        for metadata in ({"when": object()}, {1j}, b"bytes"):
            with anyio.fail_after(2), pytest.raises(EncodeError, match="metadata must be JSON"):
                await peer.connect(peer_id + "b", metadata=metadata)
        assert peer.connections == []


def test_peer_takes_peerjs_debug_levels() -> None:
    """Peer(debug=0..3) sets the peerpy logger's level; another value is refused."""
    import logging

    logger = logging.getLogger("peerpy")
    level, handlers = logger.level, list(logger.handlers)
    try:
        Peer("a", debug=2)
        assert logger.level == logging.WARNING
        with pytest.raises(ConfigurationError, match="debug must be"):
            Peer("a", debug=5)
    finally:
        logger.setLevel(level)
        logger.handlers[:] = handlers
