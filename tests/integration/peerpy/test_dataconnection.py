"""DataConnection (peerpy.dataconnection) between two real peers: the inbox read with recv().

Values received before the application reads them wait in the connection's
inbox; ``recv()`` must give them back in the order sent on a reliable
channel, whole values and chunked ones mixed, whether they were waiting or
arrive while the reader waits.  Each test runs on each backend (both peers
on it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from peerpy.peer import Peer

from ...helpers.brokers import peerpy_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with peerpy_server() as broker_url:
        yield broker_url


def values(start: int, count: int) -> list[Any]:
    """Small values and ones chunked by the binary serialization (> 16300 bytes), mixed."""
    return [
        bytes([n % 256]) * (20_000 + n) if n % 3 == 0 else {"n": n, "s": "x" * (n % 7)}
        for n in range(start, start + count)
    ]


async def test_recv_gives_values_in_the_order_sent(
    url: str, peer_id: str, peer_backend: str
) -> None:
    """On a reliable channel recv() returns every value in order: those waiting in the
    inbox first, then those arriving while it waits."""
    async with (
        Peer(peer_id + "a", server=url) as alice,
        Peer(peer_id + "b", server=url) as bob,
    ):
        conn = await alice.connect(peer_id + "b", reliable=True)
        incoming = await bob.accept()
        assert incoming.backend == peer_backend
        first, second = values(0, 40), values(40, 40)
        for value in first:
            await conn.send(value)
        # Let all of the first batch arrive unread: it waits in the inbox.
        with anyio.fail_after(15):
            while len(incoming._inbox) < len(first):  # noqa: ASYNC110 - the inbox fills
                await anyio.sleep(0.02)
        got = []
        async with anyio.create_task_group() as tg:

            async def send_second() -> None:
                for value in second:
                    await conn.send(value)

            with anyio.fail_after(15):
                for _ in range(len(first) // 2):
                    got.append(await incoming.recv())
                tg.start_soon(send_second)
                for _ in range(len(first) // 2 + len(second)):
                    got.append(await incoming.recv())
        assert got == first + second
