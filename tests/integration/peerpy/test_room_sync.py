"""The blocking room (peerpy.sync.Room): the async Room's names, run on the peer's portal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from peerpy import room as async_room
from peerpy import sync

from ...helpers.brokers import peerpy_server


@pytest.fixture
def url() -> Iterator[str]:
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(peerpy_server()) as broker_url,
    ):
        yield broker_url


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_the_blocking_room_has_the_async_names() -> None:
    """sync.Room has every public name of peerpy.room.Room, and sync.Peer has join."""
    instance_attributes = {"name", "metadata"}  # plain attributes of the async Room
    assert public(async_room.Room) | instance_attributes == public(sync.Room)
    assert "join" in public(sync.Peer)


def test_a_blocking_group_chat(url: str, peer_id: str) -> None:
    """Blocking members join, see each other, broadcast, reply from a handler, and leave."""
    a, b = peer_id + "a", peer_id + "b"
    with sync.Peer(a, server=url) as alice, sync.Peer(b, server=url) as bob:
        with alice.join("lobby", metadata={"name": "Alice"}) as ra:
            joined = threading.Event()
            left: list[str] = []
            ra.on("join", lambda member, meta: joined.set())
            ra.on("leave", left.append)
            with bob.join("lobby", metadata={"name": "Bob"}) as rb:
                assert dict(rb.members) == {a: {"name": "Alice"}}
                assert joined.wait(10)
                assert dict(ra.members) == {b: {"name": "Bob"}}
                # A handler runs on the dispatcher thread: it may call blocking methods.
                rb.on("data", lambda member, value: rb.send(value * 2, to=member))
                ra.send(21)
                assert ra.recv(timeout=10) == (b, 42)
                with pytest.raises(TimeoutError):
                    ra.recv(timeout=0.2)
                assert set(ra.connections) == {b}
            deadline = threading.Event()
            for _ in range(100):
                if left:
                    break
                deadline.wait(0.05)
            assert left == [b]
            assert ra.joined
        assert not ra.joined
        seen: list[Any] = list(ra)  # ends once left
        assert seen == []
