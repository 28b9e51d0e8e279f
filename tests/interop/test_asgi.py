"""The real PeerJS 1.5.5 in Chromium and peerpy through the broker mounted in an ASGI app.

The broker is ``peerpy_server.asgi.BrokerApp`` mounted at ``/signal`` in a
Starlette app served by uvicorn; PeerJS gets ``path: "/signal/"`` and nothing
else changes.  The rest of the interop suite covers the built-in broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from peerpy_server import BrokerConfig
from peerpy_server.asgi import BrokerApp

from ..helpers.targets import mounted_app, run_uvicorn
from .pairs import Pair
from .values import BROWSER_SEES, BROWSER_SENDS, PY_SEES, PY_SENDS, assert_same

pytestmark = [pytest.mark.anyio, pytest.mark.interop]


@pytest.fixture(scope="module")
async def broker() -> AsyncIterator[str]:
    """Overrides the suite's brokers: ours mounted at /signal under uvicorn."""
    broker_app = BrokerApp(BrokerConfig(expire_timeout=1.0))
    async with run_uvicorn(mounted_app(broker_app, "/signal")) as port:
        yield f"http://127.0.0.1:{port}/signal/"


async def test_peerjs_and_peerpy_exchange_data_through_the_mount(
    pair: Pair, direction: str, label: str
) -> None:
    """Both register through the mount; a DataConnection carries values both ways."""
    conn, info = await pair.open(direction, label=label, serialization="binary", reliable=True)
    assert conn.connection_id == info.connection_id
    for value in PY_SENDS["binary"]:
        await conn.send(value)
    seen = await pair.page.recv(conn.connection_id, len(PY_SENDS["binary"]))
    assert_same(seen, BROWSER_SEES["binary"])
    await pair.page.send(conn.connection_id, *BROWSER_SENDS["binary"])
    with anyio.fail_after(10):
        received = [await conn.recv() for _ in BROWSER_SENDS["binary"]]
    assert_same(received, PY_SEES["binary"])
    await conn.close()
