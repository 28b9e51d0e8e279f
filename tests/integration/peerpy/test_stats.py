"""conn.stats() (peerpy.stats) between real peers: figures checked against what was sent.

Data connections run on each backend pair (aiortc, wrtc, mixed in both offer
directions); calls on each backend (the mapping of libwebrtc's media report is
also tested in tests/unit/peerpy/test_stats.py).
Everything is on loopback, where a round trip takes well under a
millisecond: aiortc's is measured finer than that, libwebrtc's in whole
milliseconds (so 0 on loopback).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from peerpy import sync
from peerpy.media import PatternVideoTrack, ToneAudioTrack
from peerpy.mediaconnection import MediaConnection
from peerpy.peer import Peer
from peerpy.stats import ConnectionStats

from ...helpers.brokers import peerpy_server
from ...helpers.waiting import eventually

#: What the sender sends: values of 16,000 bytes (one binary-serialized frame each).
VALUE_BYTES = 16_000
VALUES = 150


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with peerpy_server() as broker_url:
        yield broker_url


def check_round_trip(stats: ConnectionStats, backend: str) -> None:
    """The selected pair's round trip is there and plausible on loopback."""
    rtt = stats.round_trip_time
    assert rtt is not None
    assert 0 <= rtt < 1
    if backend == "aiortc":  # libwebrtc's whole milliseconds give 0 here
        assert rtt > 0


def within_one_percent(counted: int | None, sent: int) -> bool:
    return counted is not None and abs(counted - sent) <= sent / 100


@pytest.mark.anyio
async def test_data_stats_count_the_payload_sent(
    url: str, peer_id: str, backends: tuple[str, str]
) -> None:
    """Payload bytes within 1 % of what was sent, on both sides; packets, RTT, route;
    the figures stay readable after the connection closed.  Resumption's
    acknowledgements are not payload: the receiver's bytes_sent stays 0, while its
    channel carries them (at most one 11-byte acknowledgement per message)."""
    caller, callee = backends
    sent = VALUES * VALUE_BYTES
    async with (
        Peer(peer_id + "a", server=url, backend=caller) as alice,
        Peer(peer_id + "b", server=url, backend=callee) as bob,
    ):
        conn = await alice.connect(peer_id + "b", reliable=True)
        incoming = await bob.accept()
        assert (conn.backend, incoming.backend) == backends
        assert conn.resumable
        assert incoming.resumable
        with anyio.fail_after(30):
            for n in range(VALUES):
                await conn.send(bytes([n % 256]) * VALUE_BYTES)
            for _ in range(VALUES):
                await incoming.recv()
        ours, theirs = await conn.stats(), await incoming.stats()
        assert within_one_percent(ours.bytes_sent, sent), ours
        assert within_one_percent(theirs.bytes_received, sent), theirs
        assert ours.bytes_received == theirs.bytes_sent == 0
        wire = await incoming._backend.stats_report(incoming.peer_connection, incoming.data_channel)
        acks = sum(e.get("bytesSent", 0) for e in wire.values() if e["type"] == "data-channel")
        assert 0 < acks <= VALUES * 11
        # The transport carried the payload in packets of at most ~1.2 kB.
        assert ours.packets_sent is not None
        assert ours.packets_sent > sent / 1300
        assert theirs.packets_received is not None
        assert theirs.packets_received > sent / 1300
        assert ours.packets_received
        assert theirs.packets_sent
        assert ours.packets_lost is None
        assert ours.tracks == ()
        check_round_trip(ours, caller)
        check_round_trip(theirs, callee)
        assert ours.route == conn.route
        assert ours.route is not None
        assert ours.route.local_address[0] == "127.0.0.1"
        raw = await conn.raw_stats()
        assert isinstance(raw, Mapping)
        await conn.close()
        after = await conn.stats()
        assert after.bytes_sent == ours.bytes_sent
        assert after.route == ours.route


@pytest.mark.anyio
async def test_call_stats_count_frames(url: str, peer_id: str, peer_backend: str) -> None:
    """A call: frames encoded and decoded once frames were received, per track."""
    async with (
        Peer(peer_id + "a", server=url) as alice,
        Peer(peer_id + "b", server=url) as bob,
    ):
        call: MediaConnection | None = None
        async with anyio.create_task_group() as tg:

            async def dial() -> None:
                nonlocal call
                call = await alice.call(peer_id + "b", [ToneAudioTrack(), PatternVideoTrack()])

            tg.start_soon(dial)
            incoming = await bob.accept_call()
            await incoming.answer()  # receive only
        assert call is not None
        video = (await incoming.wait_stream()).video
        assert video is not None
        with anyio.fail_after(20):
            for _ in range(20):
                await video.recv()

        async def rtcp_heard() -> bool:  # the remote's RTCP reports come about every second
            return all(t.jitter is not None for t in (await call.stats()).tracks)

        await eventually(rtcp_heard, within=10, what="the remote's RTCP reports")
        ours, theirs = await call.stats(), await incoming.stats()
        assert [(t.direction, t.kind) for t in ours.tracks] == [
            ("outbound", "audio"),
            ("outbound", "video"),
        ]
        sent = ours.tracks[1]
        assert sent.frames_encoded is not None
        assert sent.frames_encoded >= 20
        assert sent.frames_per_second is not None
        assert sent.frames_per_second > 0
        local_video = call.local_stream.video
        assert local_video is not None
        assert sent.track_id == local_video.id
        received = next(t for t in theirs.tracks if t.kind == "video")
        assert received.direction == "inbound"
        assert received.track_id == video.id
        assert received.frames_decoded is not None
        assert 20 <= received.frames_decoded <= sent.frames_encoded + 5
        assert received.frames_dropped is not None
        assert received.frames_dropped >= 0
        assert received.jitter is not None
        assert 0 <= received.jitter < 0.5
        audio = next(t for t in theirs.tracks if t.kind == "audio")
        assert audio.frames_decoded is None  # frames are a video figure (W3C)
        assert ours.bytes_sent is not None
        assert theirs.bytes_received is not None
        assert 0 < theirs.bytes_received <= ours.bytes_sent + 10_000
        assert ours.packets_lost is not None
        assert ours.packets_sent is not None
        assert ours.packets_lost <= ours.packets_sent // 100
        check_round_trip(ours, peer_backend)
        check_round_trip(theirs, peer_backend)
        await call.close()


@pytest.fixture
def sync_url() -> Iterator[str]:
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(peerpy_server()) as broker_url,
    ):
        yield broker_url


def test_sync_facade_stats(sync_url: str, peer_id: str) -> None:
    """peerpy.sync connections have stats() and raw_stats() too, blocking."""
    for cls in (sync.DataConnection, sync.MediaConnection):
        assert {"stats", "raw_stats"} <= set(vars(sync._Connection)) & set(dir(cls))
    with (
        sync.Peer(peer_id + "a", server=sync_url) as alice,
        sync.Peer(peer_id + "b", server=sync_url) as bob,
    ):
        conn = alice.connect(peer_id + "b", reliable=True)
        incoming = bob.accept(timeout=15)
        conn.send(b"x" * 1000)
        assert incoming.recv(timeout=10) == b"x" * 1000
        stats = conn.stats()
        assert isinstance(stats, ConnectionStats)
        assert within_one_percent(stats.bytes_sent, 1000)
        assert isinstance(conn.raw_stats(), Mapping)
        conn.close()
