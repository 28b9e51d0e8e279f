"""Resumable data connections (peerpy.generation) between two real peers on loopback.

The peer connection under a stream is torn down (closed under the
connection, as a dead path ends it); the same DataConnection objects must go
on over a new one: every value once, in order, ``reconnecting`` then
``resumed`` on both sides.  The network-change cases run in the lab
(``tests/lab/test_resumption.py``).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from peerpy.config import Timeouts
from peerpy.exceptions import PeerError, ResumeFailedError
from peerpy.peer import Peer

pytestmark = pytest.mark.anyio


def value(n: int) -> Any:
    """Small values and ones chunked by the binary serialization, mixed."""
    return bytes([n % 256]) * 20_000 if n % 5 == 0 else {"n": n}


async def test_a_lost_peer_connection_is_resumed_in_order(
    url: str, peer_id: str, backends: tuple[str, str]
) -> None:
    """A stream survives its peer connection being closed under it: same objects, every
    value once and in order, events on both sides, a new generation."""
    caller, callee = backends
    events: list[tuple[str, str]] = []
    async with (
        Peer(peer_id + "a", server=url, backend=caller) as alice,
        Peer(peer_id + "b", server=url, backend=callee) as bob,
    ):
        conn = await alice.connect(peer_id + "b", reliable=True, label="stream", metadata=[1])
        incoming = await bob.accept()
        assert conn.resumable
        assert incoming.resumable
        for side, c in (("a", conn), ("b", incoming)):
            c.on("reconnecting", lambda error, side=side: events.append((side, "reconnecting")))
            c.on("resumed", lambda side=side: events.append((side, "resumed")))
        total = 300
        got: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def send() -> None:
                for n in range(total):
                    await conn.send(value(n))
                    if n == 100:
                        # The path dies: the callee's peer connection goes away.
                        await incoming.peer_connection.close()
                    await anyio.sleep(0.002)

            tg.start_soon(send)
            with anyio.fail_after(40):
                while len(got) < total:
                    got.append(await incoming.recv())
        assert got == [value(n) for n in range(total)]
        # Payload counted once on each side: the tail sent again is not counted twice.
        sent, received = (await conn.stats()).bytes_sent, (await incoming.stats()).bytes_received
        assert sent == received
        assert sent is not None
        assert sent > 60 * 20_000
        assert conn.generation >= 1
        assert incoming.generation == conn.generation
        assert ("a", "resumed") in events
        assert ("b", "resumed") in events
        assert conn.open
        assert incoming.open
        assert conn.route is not None
        assert (incoming.label, incoming.metadata) == ("stream", [1])
        # Both directions still work on the new generation.
        await incoming.send("back")
        with anyio.fail_after(10):
            assert await conn.recv() == "back"


async def test_close_is_not_taken_for_a_lost_path(url: str, peer_id: str) -> None:
    """close() on a resumable connection closes the remote at once (a bye), no resuming."""
    async with (
        Peer(peer_id + "a", server=url) as alice,
        Peer(peer_id + "b", server=url) as bob,
    ):
        conn = await alice.connect(peer_id + "b")
        incoming = await bob.accept()
        assert incoming.resumable
        reconnecting: list[PeerError] = []
        incoming.on("reconnecting", reconnecting.append)
        await conn.close()
        with anyio.fail_after(5):
            await incoming.wait_closed()
        assert reconnecting == []
        assert incoming.error is None


async def test_resume_gives_up_when_the_remote_is_gone(url: str, peer_id: str) -> None:
    """A connection whose remote vanished (peer destroyed without a bye) fails with a clear
    error instead of resuming forever."""
    timeouts = Timeouts(resume=20)
    async with Peer(peer_id + "a", server=url, timeouts=timeouts) as alice:
        bob = Peer(peer_id + "b", server=url, timeouts=timeouts)
        async with bob:
            conn = await alice.connect(peer_id + "b")
            incoming = await bob.accept()
            assert incoming._resumable is not None
            incoming._resumable._bye_sent = True  # as if the process died: no bye
        with anyio.fail_after(20):
            await conn.wait_closed()
        assert isinstance(conn.error, PeerError)
        assert not isinstance(conn.error, ResumeFailedError)  # told, not timed out


async def test_peerjs_style_connection_is_not_resumable(url: str, peer_id: str) -> None:
    """With Timeouts.resume=None a peer offers nothing: the connection is as PeerJS's."""
    async with (
        Peer(peer_id + "a", server=url, timeouts=Timeouts(resume=None)) as alice,
        Peer(peer_id + "b", server=url) as bob,
    ):
        conn = await alice.connect(peer_id + "b")
        incoming = await bob.accept()
        assert not conn.resumable
        assert not incoming.resumable
        await conn.send("plain")
        with anyio.fail_after(5):
            assert await incoming.recv() == "plain"


async def test_the_caller_numbers_its_first_message_when_the_answer_applies_slowly(
    url: str, peer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller's channel may open while the ANSWER is still being applied (wrtc polls
    its state; a loaded machine): resumption, which the ANSWER enables, must already be
    on then, or the caller's first message goes out without its envelope and the callee
    fails the connection ("unknown envelope type", seen in the transfer fault suite)."""
    from peerpy.connection import Connection

    applied = Connection._set_remote

    async def slow_set_remote(self: Connection, description: Any) -> None:
        await applied(self, description)
        if self.originator:
            await anyio.sleep(0.5)  # the channel opens meanwhile

    monkeypatch.setattr(Connection, "_set_remote", slow_set_remote)
    async with Peer(peer_id + "a", server=url) as alice, Peer(peer_id + "b", server=url) as bob:
        conn = await alice.connect(peer_id + "b", reliable=True)
        await conn.send("first")
        incoming = await bob.accept()
        with anyio.fail_after(10):
            assert await incoming.recv() == "first"
        assert conn.resumable
        assert incoming.resumable
        assert incoming.error is None
