"""peerpy.backends._sctp: the cheaper aiortc SCTP send path, its loss handling and its fallback."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiortc
import anyio
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcsctptransport import SCTP_DATA_LAST_FRAG, DataChunk
from peerpy_protocol.ids import random_token

from peerpy.backends import _sctp
from peerpy.dataconnection import DataConnection
from peerpy.peer import Peer

from ...helpers.brokers import peerpy_server

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def aiortc_pair() -> AsyncIterator[tuple[DataConnection, DataConnection]]:
    """(sender, receiver): a reliable raw data connection between two aiortc peers."""
    tok = random_token()
    async with (
        peerpy_server() as url,
        Peer("a" + tok, server=url, backend="aiortc") as alice,
        Peer("b" + tok, server=url, backend="aiortc") as bob,
    ):
        conn = await alice.connect("b" + tok, serialization="raw", reliable=True)
        yield conn, await bob.accept()


def transport_of(conn: DataConnection) -> Any:
    assert conn.data_channel is not None
    return conn.data_channel.transport


def test_this_aiortc_is_supported() -> None:
    """The main venv (aiortc 1.16) and the 3.10 venv (aiortc 1.15) both get the tuning."""
    major, minor = (int(x) for x in aiortc.__version__.split(".")[:2])
    assert (major, minor) in {(1, 15), (1, 16)}
    assert _sctp.supported()


async def test_data_connections_on_aiortc_are_tuned() -> None:
    async with aiortc_pair() as (sender, receiver):
        assert _sctp.tuned(transport_of(sender))
        assert _sctp.tuned(transport_of(receiver))
        await sender.send(b"x" * 50_000)
        assert await receiver.recv() == b"x" * 50_000


async def test_lost_packets_are_retransmitted_intact_and_in_order() -> None:
    """Drop the first transmission of some DATA chunks (gaps: fast retransmit) and the
    last chunks of the stream (no later chunk reveals them: the T3 timer): every
    message still arrives whole and in order, through the tuned send path."""
    messages = [hashlib.sha256(i.to_bytes(4, "big")).digest() * 500 for i in range(120)]
    async with aiortc_pair() as (sender, receiver):
        sctp = transport_of(sender)
        assert _sctp.tuned(sctp)
        send_chunk = sctp._send_chunk
        dropped: set[int] = set()
        expirations = 0
        t3_expired = sctp._t3_expired
        tail: list[int] = []

        async def lossy(chunk: Any) -> None:
            if isinstance(chunk, DataChunk) and chunk._sent_count == 1:
                last = chunk.flags & SCTP_DATA_LAST_FRAG and messages[-1].endswith(chunk.user_data)
                if last:
                    tail.append(chunk.tsn)
                if chunk.tsn % 29 == 0 or last:
                    dropped.add(chunk.tsn)
                    return  # lost on the way
            await send_chunk(chunk)

        def counting_t3() -> None:
            nonlocal expirations
            expirations += 1
            t3_expired()

        sctp._send_chunk = lossy
        sctp._t3_expired = counting_t3
        with anyio.fail_after(60):
            for message in messages:  # the last chunk of the last one is lost too
                await sender.send(message)
            received = [await receiver.recv() for _ in messages]
        state = sctp._peerpy_tuned
    assert received == messages
    assert len(dropped) >= 10
    assert tail  # its loss was revealed by no later chunk: only T3 could resend it
    assert expirations >= 1
    assert state.marks >= 2  # SACKs with gaps and T3 went through the wrappers


async def test_unsupported_aiortc_keeps_aiortc_own_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another aiortc version, a turned-off tuning or a missing attribute: nothing changes."""
    pc = RTCPeerConnection()
    try:
        channel = pc.createDataChannel("x")
        transport = channel.transport
        original = transport._transmit
        assert not _sctp.tune(object())
        monkeypatch.setattr(aiortc, "__version__", "1.17.0")
        assert not _sctp.supported()
        assert not _sctp.tune(transport)
        monkeypatch.setattr(aiortc, "__version__", "1.16.0")
        monkeypatch.setenv("PEERPY_SCTP_TUNING", "0")
        assert not _sctp.tune(transport)
        monkeypatch.delenv("PEERPY_SCTP_TUNING")
        monkeypatch.delattr(transport, "_sent_queue")
        assert not _sctp.tune(transport)
        assert transport._transmit == original
        assert not _sctp.tuned(transport)
    finally:
        monkeypatch.undo()
        await pc.close()


async def test_untuned_aiortc_still_carries_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "2.0.0")
    async with aiortc_pair() as (sender, receiver):
        assert not _sctp.tuned(transport_of(sender))
        for i in range(20):
            await sender.send(bytes([i]) * 30_000)
        assert [await receiver.recv() for _ in range(20)] == [
            bytes([i]) * 30_000 for i in range(20)
        ]
