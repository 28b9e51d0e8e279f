"""Closing and error cases between peerpy and the real PeerJS 1.5.5 in Chromium.

Closes run in both directions (who called connect()) and on both brokers;
the error cases run on both brokers.
"""

from __future__ import annotations

import random

import anyio
import pytest
from peerpy_protocol.ids import random_token
from playwright.async_api import Error as PlaywrightError

from peerpy import PeerUnavailableError, UnavailableIdError

from .pairs import Pair, python_peer

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

#: A burst that is still in flight when close() is called: small values and
#: one chunked BinaryPack message (100 kB, 7 chunks).
BURST_COUNT = 20


def burst(seed: str) -> list[object]:
    values: list[object] = [f"message {i} ✓" for i in range(BURST_COUNT)]
    values.insert(BURST_COUNT // 2, random.Random(seed).randbytes(100_000))
    return values


@pytest.mark.parametrize("flush", [False, True], ids=["no-flush", "flush"])
async def test_python_closes(pair: Pair, direction: str, label: str, flush: bool) -> None:
    """Python's close() reaches the browser; with flush, a burst sent just before arrives whole."""
    conn, info = await pair.open(direction, label=label)  # unordered: PeerJS's default
    if flush:
        values = burst(label)
        for value in values:
            await conn.send(value)
    with anyio.fail_after(15):
        await conn.close(flush=flush)
    assert conn.closed
    assert not conn.open
    assert await pair.page.wait_closed(info.connection_id)
    if flush:
        seen = await pair.page.drain(info.connection_id)
        texts = sorted(v for v in seen if isinstance(v, str))
        blobs = [v for v in seen if isinstance(v, dict)]
        assert texts == sorted(v for v in values if isinstance(v, str))
        assert [b["$len"] for b in blobs] == [100_000]


@pytest.mark.parametrize("flush", [False, True], ids=["no-flush", "flush"])
async def test_browser_closes(pair: Pair, direction: str, label: str, flush: bool) -> None:
    """The browser's close() reaches Python; with flush, everything sent before it arrives first.

    PeerJS's ``close({flush: true})`` only sends its close request through the
    normal send path, so on its default *unordered* channel the request may
    overtake data still in flight (a PeerJS limitation).  The flush case
    therefore uses an ordered channel (``reliable: true``), where PeerJS
    documents that the close request is queued behind pending data.
    """
    conn, info = await pair.open(direction, label=label, reliable=flush)
    texts = [f"message {i} ✓" for i in range(BURST_COUNT)]
    if flush:
        await pair.page.send(info.connection_id, *texts)
    await pair.page.close(info.connection_id, flush=flush)
    received = []
    with anyio.fail_after(15):
        async for value in conn:
            received.append(value)
    assert conn.closed
    if flush:
        assert received == texts
    else:
        assert received == []
    assert await pair.page.wait_closed(info.connection_id)


async def test_connect_to_unknown_id_is_peer_unavailable(pair: Pair) -> None:
    """Python connecting to an id nobody holds gets peer-unavailable; the peer stays usable."""
    with anyio.fail_after(15), pytest.raises(PeerUnavailableError) as info:
        await pair.python.connect("nobody-" + random_token())
    assert info.value.type == "peer-unavailable"
    assert pair.python.open
    assert pair.python.connections == []


async def test_browser_connect_to_unknown_id_is_peer_unavailable(pair: Pair) -> None:
    """The broker's EXPIRE reaches PeerJS too: its Peer emits peer-unavailable."""
    nobody = "nobody-" + random_token()
    await pair.page.page.evaluate(
        "([name, id]) => { window.harness.peers[name].peer.connect(id); }", ["main", nobody]
    )
    error = await pair.page.wait_peer_error("main", "peer-unavailable")
    assert error["message"] == f"Could not connect to peer {nobody}"


async def test_python_claiming_browser_id_is_unavailable_id(pair: Pair) -> None:
    """A Python peer claiming the id the browser holds gets unavailable-id."""
    with anyio.fail_after(15), pytest.raises(UnavailableIdError) as info:
        async with python_peer(pair.browser_id, pair.broker_url):
            pass
    assert info.value.type == "unavailable-id"


async def test_browser_claiming_python_id_is_unavailable_id(pair: Pair) -> None:
    """A browser Peer claiming the id the Python peer holds gets unavailable-id."""
    try:
        with pytest.raises(PlaywrightError, match="unavailable-id"):
            await pair.page.start("duplicate", pair.python_id, pair.broker_url)
        errors = await pair.page.peer_errors("duplicate")
        assert errors == [{"type": "unavailable-id", "message": f'ID "{pair.python_id}" is taken'}]
    finally:
        await pair.page.destroy("duplicate")
    assert pair.python.open
