"""Data connections between peerpy and the real PeerJS 1.5.5 in Chromium.

Every case runs in both directions (who calls connect()) and on both brokers.
One connection per case carries one batch of values each way, so the value
matrix of a serialization costs a single round trip.
"""

from __future__ import annotations

import base64
import hashlib
import random

import anyio
import pytest

from peerpy.backends import wrtc_installed

from .pairs import Pair
from .values import (
    BROWSER_SEES,
    BROWSER_SENDS,
    PY_SEES,
    PY_SENDS,
    RELIABLE,
    SERIALIZATIONS,
    assert_same,
)

pytestmark = [pytest.mark.anyio, pytest.mark.interop]


@pytest.fixture(scope="module", params=["aiortc", "wrtc"])
def python_backend(request: pytest.FixtureRequest) -> str:
    """Every case runs with the Python peer on each backend (wrtc: when installed)."""
    if request.param == "wrtc" and not wrtc_installed():
        pytest.skip("wrtc is not installed (pip install 'peerpy-sdk[wrtc]')")
    return str(request.param)


METADATA = {"user": "zoë", "n": [1, 2.5, None], "nested": {"ok": True}}
MB = 1 << 20


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
async def test_values_round_trip(
    pair: Pair, direction: str, label: str, serialization: str
) -> None:
    """Each value kind crosses both ways; label, metadata and reliable reach the other side."""
    reliable = RELIABLE[serialization]
    conn, info = await pair.open(
        direction, label=label, serialization=serialization, reliable=reliable, metadata=METADATA
    )
    wire_name = "binary" if serialization == "binary-utf8" else serialization
    # Both sides agree on what the connection is.
    assert conn.connection_id == info.connection_id
    assert (info.label, conn.label) == (label, label)
    assert info.metadata == METADATA
    assert conn.metadata == METADATA
    assert info.reliable is reliable
    assert conn.reliable is reliable
    assert info.ordered is reliable
    assert conn.data_channel is not None
    assert conn.data_channel.ordered is reliable
    # Like PeerJS, peerpy reports the wire name ("binary" for binary-utf8) on both ends.
    assert info.serialization == wire_name
    assert conn.serialization == wire_name
    if direction == "browser-connects":
        assert conn.peer == pair.browser_id
    else:
        assert info.peer == pair.python_id

    # Python -> browser.
    for value in PY_SENDS[serialization]:
        await conn.send(value)
    seen = await pair.page.recv(conn.connection_id, len(PY_SENDS[serialization]))
    assert_same(seen, BROWSER_SEES[serialization])

    # Browser -> Python.
    await pair.page.send(conn.connection_id, *BROWSER_SENDS[serialization])
    with anyio.fail_after(10):
        received = [await conn.recv() for _ in BROWSER_SENDS[serialization]]
    assert_same(received, PY_SEES[serialization])
    await conn.close()


@pytest.mark.parametrize("serialization", ["binary", "MsgPack"])
async def test_one_megabyte_each_way(
    pair: Pair, direction: str, label: str, serialization: str
) -> None:
    """A 1 MB binary value is chunked (BinaryPack) or sliced (MsgPack) and arrives intact."""
    conn, _ = await pair.open(direction, label=label, serialization=serialization)
    rng = random.Random(label)
    to_browser = rng.randbytes(MB)
    to_python = rng.randbytes(MB)

    await conn.send(to_browser)
    [seen] = await pair.page.recv(conn.connection_id)
    # A reassembled BinaryPack message yields Uint8Array, not ArrayBuffer (spec §4.5).
    assert seen == {
        "$type": "Uint8Array",
        "$len": MB,
        "$sha256": hashlib.sha256(to_browser).hexdigest(),
    }

    payload = {"$type": "Uint8Array", "$b64": base64.b64encode(to_python).decode()}
    await pair.page.send(conn.connection_id, payload)
    with anyio.fail_after(20):
        received = await conn.recv()
    assert type(received) is bytes
    assert len(received) == MB
    assert hashlib.sha256(received).digest() == hashlib.sha256(to_python).digest()
    await conn.close()
