"""PeerJS API parity (issue 13): connect timeout, sdp_transform, custom serializers,
the first open event, typed event names, buffer_size, the sync facade, the chat example.

Real aiortc peers meet on our broker on 127.0.0.1.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from aiortc import MediaStreamTrack
from anyio.from_thread import start_blocking_portal
from websockets.asyncio.client import connect

from peerpy import sync
from peerpy.config import Limits
from peerpy.dataconnection import DataConnection
from peerpy.exceptions import NegotiationFailedError, UsageError
from peerpy.media import ToneAudioTrack
from peerpy.mediaconnection import MediaConnection
from peerpy.peer import Peer
from peerpy.serialization import JsonSerializer
from peerpy.serialization import Limits as DecodingLimits

from .helpers.brokers import peerpy_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with peerpy_server(expire_timeout=1.0) as broker_url:
        yield broker_url


def no_candidates(sdp: str) -> str:
    """An SDP without its ICE candidates: nothing can connect to it."""
    return "".join(line for line in sdp.splitlines(keepends=True) if "a=candidate" not in line)


# -- connect(timeout=) --------------------------------------------------------


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


# -- sdp_transform --------------------------------------------------------------


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
async def test_call_and_answer_sdp_transform(url: str, peer_id: str) -> None:
    """call(sdp_transform=) rewrites the offer, answer(sdp_transform=) the answer."""
    offers: list[str] = []
    answers: list[str] = []

    def on_offer(sdp: str) -> str:
        offers.append(sdp)
        return sdp

    def on_answer(sdp: str) -> str:
        answers.append(sdp)
        return sdp

    failures: list[str] = []
    async with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:

        async def dial(transform: Any, limit: float | None = None) -> MediaConnection | None:
            made: list[MediaConnection] = []
            async with anyio.create_task_group() as tg:

                async def answer() -> None:
                    call = await bob.accept_call()
                    try:
                        await call.answer(sdp_transform=transform, timeout=limit)
                    except NegotiationFailedError:
                        failures.append("callee")

                tg.start_soon(answer)
                tracks: list[MediaStreamTrack] = [ToneAudioTrack()]
                with anyio.fail_after(30):
                    try:
                        made.append(
                            await alice.call(
                                peer_id + "b", tracks, sdp_transform=on_offer, timeout=limit
                            )
                        )
                    except NegotiationFailedError:
                        failures.append("caller")
            return made[0] if made else None

        out = await dial(on_answer)
        incoming_call = next(c for c in bob.connections if isinstance(c, MediaConnection))
        with pytest.raises(UsageError) as info:  # a user-facing message: no internal id
            await incoming_call.answer()
        assert incoming_call.connection_id not in str(info.value)
        assert out is not None
        assert out.open
        assert len(offers) == 1
        assert "m=audio" in offers[0]
        assert len(answers) == 1
        assert "m=audio" in answers[0]
        await out.close()
        # An answer without candidates never connects: both ends time out.
        assert await dial(no_candidates, limit=3) is None
        assert sorted(failures) == ["callee", "caller"]


# -- custom serializers ---------------------------------------------------------


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


# -- events ---------------------------------------------------------------------


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


def test_misspelt_event_names_are_type_errors(tmp_path: Path) -> None:
    """mypy flags ``peer.on("conection", ...)`` and a handler of the wrong shape."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from peerpy import DataConnection, Peer
            from peerpy.sync import Peer as SyncPeer

            def on_conn(conn: DataConnection) -> None: ...
            def on_open(peer_id: str) -> None: ...

            peer = Peer()
            peer.on("connection", on_conn)
            peer.on("open", on_open)
            peer.on("conection", on_conn)  # line 11: misspelt
            peer.on("open", on_conn)  # line 12: wrong handler
            SyncPeer().on("opne", on_open)  # line 13: misspelt (sync)
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(snippet)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode in (0, 1), run.stderr  # mypy itself ran
    assert not run.stderr
    lines = sorted({int(line.split(":")[1]) for line in run.stdout.splitlines() if "error" in line})
    assert lines == [11, 12, 13], run.stdout


# -- buffer_size ----------------------------------------------------------------


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


# -- the sync facade ------------------------------------------------------------


@pytest.fixture
def sync_url() -> Iterator[str]:
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(peerpy_server(expire_timeout=1.0)) as broker_url,
    ):
        yield broker_url


def test_sync_facade_matches_the_async_api(sync_url: str, peer_id: str) -> None:
    """off, connections, get_connection, disconnected, token; handlers before start()."""
    alice = sync.Peer(peer_id + "a", server=sync_url)
    opened: list[str] = []
    dropped: list[str] = []
    alice.on("open", opened.append)
    alice.on("open", dropped.append)
    alice.off("open", dropped.append)
    assert alice.disconnected
    assert alice.token is None
    assert alice.connections == []
    with pytest.raises(UsageError, match="unknown event"):
        alice.on("opne", opened.append)  # type: ignore[arg-type]
    alice.start()
    try:
        deadline = time.monotonic() + 10
        while not opened and time.monotonic() < deadline:
            time.sleep(0.01)
        assert opened == [peer_id + "a"]
        assert dropped == []
        assert not alice.disconnected
        assert alice.token
        with sync.Peer(peer_id + "b", server=sync_url) as bob:
            conn = alice.connect(peer_id + "b", reliable=True)
            incoming = bob.accept(timeout=15)
            assert alice.connections == [conn]
            assert alice.get_connection(peer_id + "b", conn.connection_id) is conn
            assert alice.get_connection(peer_id + "b", "dc_nope") is None
            seen: list[Any] = []
            incoming.on("data", seen.append)
            incoming.off("data", seen.append)
            conn.send("unheard")
            assert incoming.recv(timeout=10) == "unheard"
            assert seen == []
            # No attribute hands back an un-awaited coroutine.
            for name, _ in inspect.getmembers(DataConnection, inspect.iscoroutinefunction):
                if not name.startswith("_"):
                    assert not inspect.iscoroutinefunction(getattr(conn, name)), name
            assert conn.wait_open() is None  # blocks until open (it is): no coroutine
            conn.close()
    finally:
        alice.close()


# -- the chat example -------------------------------------------------------------


def test_chat_example_keeps_lines_in_order(sync_url: str, peer_id: str, tmp_path: Path) -> None:
    """examples/chat.py connects reliably (ordered): 300 lines arrive in order."""
    lines = [f"line {n}" for n in range(300)]
    script = str(ROOT / "examples" / "chat.py")
    env_url = sync_url
    out = (tmp_path / "alice.out").open("wb")
    alice = subprocess.Popen(
        [sys.executable, script, peer_id + "a"],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "PEERPY_SERVER": env_url},
    )
    bob = None
    try:
        time.sleep(1)
        bob = subprocess.Popen(
            [sys.executable, script, peer_id + "b", peer_id + "a"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**__import__("os").environ, "PEERPY_SERVER": env_url},
        )
        assert bob.stdin is not None
        bob.stdin.write(("\n".join(lines) + "\n").encode())
        bob.stdin.flush()
        deadline = time.monotonic() + 60
        expected = [f"{peer_id}b: {line}" for line in lines]
        while time.monotonic() < deadline:
            got = (tmp_path / "alice.out").read_text().splitlines()
            if len(got) >= len(lines):
                break
            time.sleep(0.1)
        assert got == expected
    finally:
        for process in (bob, alice):
            if process is not None:
                process.kill()
                process.wait(10)
                if process.stdin is not None:
                    process.stdin.close()
        out.close()
    source = (ROOT / "examples" / "chat.py").read_text()
    assert "reliable=True" in source
