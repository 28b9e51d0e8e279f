"""DataConnection (peerpy.dataconnection) between two real peers.

Values received before the application reads them wait in the connection's
inbox; ``recv()`` must give them back in the order sent on a reliable
channel, whole values and chunked ones mixed, whether they were waiting or
arrive while the reader waits.  Each test runs on each backend (both peers
on it).  Also what PeerJS has (issue 13): custom serializers and ``buffer_size``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest

from peerpy.config import Limits
from peerpy.exceptions import UsageError
from peerpy.peer import Peer
from peerpy.serialization import JsonSerializer
from peerpy.serialization import Limits as DecodingLimits

pytestmark = pytest.mark.anyio


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


# -- custom serializers (issue 13) ---------------------------------------------


class ShoutingJson(JsonSerializer):
    """A custom serialization built on the json one: strings travel upper-cased."""

    made: ClassVar[list[DecodingLimits]] = []

    def __init__(self, *, limits: DecodingLimits | None = None) -> None:
        super().__init__(limits=limits)
        self.name = self.wire_name = "x-shout"
        assert limits is not None
        ShoutingJson.made.append(limits)

    def encode(self, value: object) -> list[bytes | str]:
        return super().encode(value.upper() if isinstance(value, str) else value)


class Broken:
    """Not a serializer: no decode_sized, held_bytes..."""

    def __init__(self, *, limits: DecodingLimits | None = None) -> None:
        self.name = self.wire_name = "x-broken"

    def encode(self, value: object) -> list[bytes | str]:
        return [str(value)]


@pytest.mark.anyio
async def test_custom_serializers(url: str, peer_id: str) -> None:
    """Peer(serializers={name: factory}) serializes both ways under that name."""
    custom: dict[str, Any] = {"x-shout": ShoutingJson, "x-broken": Broken}
    limits = Limits(decoding=DecodingLimits(max_message_bytes=1000))
    async with (
        Peer(peer_id + "a", server=url, serializers=custom, limits=limits) as alice,
        Peer(peer_id + "b", server=url, serializers={"x-shout": ShoutingJson}) as bob,
        Peer(peer_id + "c", server=url) as carol,
    ):
        conn = await alice.connect(peer_id + "b", serialization="x-shout", reliable=True)
        incoming = await bob.accept()
        assert (conn.serialization, incoming.serialization) == ("x-shout", "x-shout")
        await conn.send("quiet please")
        assert await incoming.recv() == "QUIET PLEASE"
        await incoming.send({"k": "v"})
        assert await conn.recv() == {"k": "v"}
        assert ShoutingJson.made[0].max_message_bytes == 1000  # the Peer's limits reach it
        with pytest.raises(UsageError, match=r"lacks .*held_bytes.*decode_sized"):
            await alice.connect(peer_id + "b", serialization="x-broken")
        with pytest.raises(UsageError, match="unknown serialization"):
            await carol.connect(peer_id + "b", serialization="x-shout")
    with pytest.raises(UsageError):
        Peer(serializers={"": ShoutingJson})


# -- buffer_size (issue 13) ----------------------------------------------------


@pytest.mark.anyio
async def test_buffer_size_counts_messages_waiting_to_be_sent(url: str, peer_id: str) -> None:
    """buffer_size counts chunks waiting for room in the channel; 0 once all went out."""
    small = Limits(send_high_water=64 * 1024, send_low_water=16 * 1024)
    async with (
        Peer(peer_id + "a", server=url, limits=small) as alice,
        Peer(peer_id + "b", server=url) as bob,
    ):
        conn = await alice.connect(peer_id + "b", reliable=True)
        incoming = await bob.accept()
        assert (conn.buffer_size, conn.buffered_amount) == (0, 0)
        peak = 0
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(conn.send, b"x" * (256 * 1024))

            async def drain() -> None:
                for _ in range(8):
                    assert len(await incoming.recv()) == 256 * 1024

            tg.start_soon(drain)
            with anyio.fail_after(60):
                while True:
                    peak = max(peak, conn.buffer_size)
                    if peak and conn.buffer_size == 0:
                        break
                    await anyio.sleep(0.001)
        assert peak >= 8  # several sends of many chunks each were waiting
        assert conn.buffer_size == 0
