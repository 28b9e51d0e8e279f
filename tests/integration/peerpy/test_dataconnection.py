"""DataConnection (peerpy.dataconnection) between two real peers through our broker.

Most tests run on every backend pair: both peers on aiortc, both on wrtc, and
mixed in both offer directions (the ``…a`` peer offers); see ``backends`` in
conftest.  Values received before the application reads them wait in the
connection's inbox; ``recv()`` must give them back in the order sent on a
reliable channel, whole values and chunked ones mixed, whether they were
waiting or arrive while the reader waits (on each backend, both peers on it).
Also what PeerJS has (issue 13): custom serializers and ``buffer_size``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import pytest

from peerpy.config import Limits
from peerpy.dataconnection import DataConnection
from peerpy.exceptions import (
    ConnectionClosedError,
    DecodeError,
    EncodeError,
    MessageTooBigError,
    NotOpenError,
    ProtocolError,
    UsageError,
)
from peerpy.peer import Peer
from peerpy.serialization import JsonSerializer
from peerpy.serialization import Limits as DecodingLimits

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def pair(
    url: str,
    peer_id: str,
    backends: tuple[str, str],
    *,
    limits: Limits | None = None,
    **options: Any,
) -> AsyncIterator[tuple[DataConnection, DataConnection]]:
    """Two connected peers; yields (caller's connection, callee's connection)."""
    async with (
        Peer(peer_id + "a", server=url, backend=backends[0]) as alice,
        Peer(peer_id + "b", server=url, backend=backends[1], limits=limits) as bob,
    ):
        conn = await alice.connect(peer_id + "b", **options)
        incoming = await bob.accept()
        assert (conn.backend, incoming.backend) == backends
        yield conn, incoming


COMMON = [None, True, False, 0, 1, -1, 127, -33, 2**31 - 1, -(2**31), 2**32, 1.5, -0.1]
STRINGS = ["", "hi", "héllo wörld", "😀" * 3, "x" * 70000]
NESTED = [[1, "a", [2, [3]]], {"a": {"b": [1, 2, {"c": None}]}}, {}, []]


@pytest.mark.parametrize(
    ("serialization", "values"),
    [
        ("binary", [*COMMON, *STRINGS, *NESTED, b"", b"\x00\xff" * 10, bytes(100_000)]),
        ("binary-utf8", [*COMMON, *STRINGS, *NESTED, b"\x01\x02"]),
        ("json", [*COMMON[1:], "héllo", "😀", *NESTED, 0.0]),
        ("raw", ["", "héllo 😀", b"\x00\x01", bytes(60_000)]),
        ("MsgPack", [*COMMON, *STRINGS, *NESTED, b"", b"\x00\xff" * 10, bytes(100_000)]),
    ],
)
async def test_values_round_trip(
    url: str, peer_id: str, backends: tuple[str, str], serialization: str, values: list[Any]
) -> None:
    """Every value kind a serialization carries arrives equal, in both directions."""
    async with pair(url, peer_id, backends, serialization=serialization) as (conn, incoming):
        expected = "binary" if serialization == "binary-utf8" else serialization
        assert incoming.serialization == expected
        assert conn.serialization == expected
        for sender, receiver in ((conn, incoming), (incoming, conn)):
            for value in values:
                await sender.send(value)
            received = [await receiver.recv() for _ in values]
            if serialization == "raw" or not conn.reliable:
                # unordered channels may reorder; compare as multisets of reprs
                assert sorted(map(repr, received)) == sorted(map(repr, values))
            else:
                assert received == values


@pytest.mark.parametrize("serialization", ["binary", "MsgPack"])
async def test_five_megabyte_message(
    url: str, peer_id: str, backends: tuple[str, str], serialization: str
) -> None:
    """A 5 MB message arrives whole (chunked by binary, sliced by MsgPack)."""
    blob = os.urandom(5 * 1024 * 1024)
    async with pair(url, peer_id, backends, serialization=serialization) as (conn, incoming):
        await conn.send({"name": "blob", "data": blob})
        with anyio.fail_after(30):
            got = await incoming.recv()
        assert got["name"] == "blob"
        assert hashlib.sha256(got["data"]).digest() == hashlib.sha256(blob).digest()


async def test_too_big_for_json_and_raw(url: str, peer_id: str, backends: tuple[str, str]) -> None:
    """json refuses >= 16300 bytes (PeerJS's rule); raw refuses more than the remote allows."""
    async with pair(url, peer_id, backends, serialization="json") as (conn, _):
        with pytest.raises(MessageTooBigError):
            await conn.send("x" * 16300)
        await conn.send("x" * 100)
    async with pair(url, peer_id + "r", backends, serialization="raw") as (conn, _):
        with pytest.raises(MessageTooBigError):
            await conn.send(bytes(300_000))


async def test_unsupported_values_raise_encode_error(
    url: str, peer_id: str, backends: tuple[str, str]
) -> None:
    """Values a serialization cannot carry raise EncodeError and nothing is sent."""
    async with pair(url, peer_id, backends) as (conn, incoming):
        with pytest.raises(EncodeError):
            await conn.send(object())
        with pytest.raises(EncodeError):
            await conn.send(2**60)
        await conn.send("after")
        assert await incoming.recv() == "after"


async def test_close_reaches_the_other_side(
    url: str, peer_id: str, backends: tuple[str, str]
) -> None:
    """close() on one side ends the other's iteration and fires close on both."""
    async with pair(url, peer_id, backends) as (conn, incoming):
        closed: list[str] = []
        conn.on("close", lambda: closed.append("caller"))
        incoming.on("close", lambda: closed.append("callee"))
        await conn.close()
        assert conn.closed
        with anyio.fail_after(10), pytest.raises(ConnectionClosedError):
            await incoming.recv()
        with anyio.fail_after(10):
            await incoming.wait_closed()
        assert sorted(closed) == ["callee", "caller"]
        with pytest.raises(NotOpenError):
            await conn.send("late")


@pytest.mark.parametrize("reliable", [False, True])
async def test_close_with_flush_delivers_everything_first(
    url: str, peer_id: str, backends: tuple[str, str], reliable: bool
) -> None:
    """close(flush=True) delivers all pending data before the remote closes."""
    async with pair(url, peer_id, backends, reliable=reliable) as (conn, incoming):
        payloads = [os.urandom(20_000) for _ in range(40)]
        for payload in payloads:
            await conn.send(payload)
        with anyio.fail_after(15):
            await conn.close(flush=True)
            received = [value async for value in incoming]
        assert sorted(received) == sorted(payloads)
        assert incoming.closed


async def test_callee_close_with_flush(url: str, peer_id: str, backends: tuple[str, str]) -> None:
    """The callee can close with flush too; the caller sees its data then the close."""
    async with pair(url, peer_id, backends, reliable=True) as (conn, incoming):
        await incoming.send("bye")
        with anyio.fail_after(10):
            await incoming.close(flush=True)
            assert [value async for value in conn] == ["bye"]


async def test_data_handler_receives_in_order(
    url: str, peer_id: str, backends: tuple[str, str]
) -> None:
    """An on('data') handler gets every value, in order on a reliable channel."""
    async with pair(url, peer_id, backends, reliable=True) as (conn, incoming):
        got: list[int] = []
        done = anyio.Event()

        def on_data(value: int) -> None:
            got.append(value)
            if len(got) == 100:
                done.set()

        incoming.on("data", on_data)
        for i in range(100):
            await conn.send(i)
        with anyio.fail_after(10):
            await done.wait()
        assert got == list(range(100))


async def test_send_backpressure_bounds_buffering(
    url: str, peer_id: str, backends: tuple[str, str]
) -> None:
    """send() waits while the channel is over its high-water mark."""
    limits = Limits(send_high_water=256 * 1024, send_low_water=64 * 1024)
    async with (
        Peer(peer_id + "a", server=url, backend=backends[0], limits=limits) as alice,
        Peer(peer_id + "b", server=url, backend=backends[1]) as bob,
    ):
        conn = await alice.connect(peer_id + "b", serialization="raw", reliable=True)
        incoming = await bob.accept()
        chunk = bytes(16 * 1024)
        peak = 0
        total = 8 * 1024 * 1024

        async def drain() -> None:
            received = 0
            while received < total:
                received += len(await incoming.recv())

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            for _ in range(total // len(chunk)):
                await conn.send(chunk)
                peak = max(peak, conn.buffered_amount)
        assert peak <= limits.send_high_water + len(chunk)


async def test_unread_data_is_bounded(url: str, peer_id: str, backends: tuple[str, str]) -> None:
    """A receiver that does not read fails loudly at its limit instead of growing."""
    limits = Limits(receive_buffer_bytes=200_000)
    async with pair(url, peer_id, backends, limits=limits, serialization="raw", reliable=True) as (
        conn,
        incoming,
    ):
        with anyio.fail_after(15):
            for _ in range(30):
                await conn.send(bytes(10_000))
            await incoming.wait_closed()
        assert isinstance(incoming.error, ProtocolError)
        assert "not read" in str(incoming.error)
        with anyio.fail_after(10):
            await conn.wait_closed()


async def test_sender_vanishing_mid_message_is_reported(
    url: str, peer_id: str, backends: tuple[str, str]
) -> None:
    """If the sender vanishes mid chunked message, the reader gets an error, not a hang."""
    async with Peer(peer_id + "b", server=url, backend=backends[1]) as bob:
        async with Peer(peer_id + "a", server=url, backend=backends[0]) as alice:
            conn = await alice.connect(bob.id or "", reliable=True)
            incoming = await bob.accept()
            # Half the chunks of a message, as if she vanished while sending it
            # (a fast backend delivers a whole queued message before closing).
            frames = list(conn._serializer.encode(os.urandom(4 * 1024 * 1024)))
            for frame in frames[: len(frames) // 2]:
                await conn._send_frame(frame)
            with anyio.fail_after(10):
                await conn._wait_acknowledged()  # those chunks did arrive
            await anyio.sleep(0.3)
        # alice is gone: her message never all arrived
        with anyio.fail_after(20):
            await incoming.wait_closed()
            with pytest.raises(DecodeError, match=r"chunk|incomplete|partial"):
                async for _ in incoming:
                    pass


# -- recv(): the inbox in order ------------------------------------------------------


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
