"""The connection registry (peerpy.registry) with fake connections: no sockets."""

from __future__ import annotations

from typing import Any

import attrs

from peerpy.exceptions import ConnectionClosedError, NetworkError, PeerError
from peerpy.registry import Registry


@attrs.define(eq=False)
class Conn:
    """A connection as the registry sees it; failing it makes it leave, as a real one does."""

    peer: str
    connection_id: str
    originator: bool = True
    _remote_set: bool = False
    registry: Registry | None = None
    errors: list[PeerError] = attrs.Factory(list)

    def _fail(self, error: PeerError) -> None:
        self.errors.append(error)
        if self.registry is not None:
            self.registry.forget(self)  # type: ignore[arg-type]


def registry_of(*conns: Conn) -> Registry:
    registry = Registry()
    for conn in conns:
        conn.registry = registry
        registry.add(conn)  # type: ignore[arg-type]
    return registry


def test_lookup_by_peer_and_connection_id() -> None:
    """get() finds a connection by its pair; iteration lists every one in order."""
    a, b = Conn("alice", "dc_1"), Conn("bob", "dc_1")
    registry = registry_of(a, b)
    assert registry.get("alice", "dc_1") is a
    assert registry.get("bob", "dc_1") is b
    assert registry.get("alice", "dc_2") is None
    assert list(registry) == [a, b]
    assert len(registry) == 2


def test_the_same_pair_again_fails_the_old_connection() -> None:
    """A second connection with the same pair replaces the first, which fails."""
    old, new = Conn("alice", "dc_1"), Conn("alice", "dc_1")
    registry = Registry()
    registry.add(old)  # type: ignore[arg-type]
    registry.add(new)  # type: ignore[arg-type]
    assert registry.get("alice", "dc_1") is new
    assert [type(e) for e in old.errors] == [ConnectionClosedError]
    assert "opened the same connection again" in str(old.errors[0])
    registry.forget(old)  # type: ignore[arg-type]  # the old one's late teardown
    assert registry.get("alice", "dc_1") is new


def test_fail_pending_fails_only_unanswered_outgoing_connections() -> None:
    """Lost broker: outgoing connections with no ANSWER yet fail; the rest stay."""
    waiting = Conn("alice", "dc_1")
    answered = Conn("alice", "dc_2", remote_set=True)
    incoming = Conn("alice", "dc_3", originator=False)
    other = Conn("bob", "dc_4")
    registry = registry_of(waiting, answered, incoming, other)
    registry.fail_pending(NetworkError("gone"), "alice")
    assert [len(c.errors) for c in (waiting, answered, incoming, other)] == [1, 0, 0, 0]
    registry.fail_pending(NetworkError("gone"))
    assert len(other.errors) == 1
    assert list(registry) == [answered, incoming]


def test_fail_peer_fails_every_connection_with_that_peer() -> None:
    """A LEAVE fails all of that remote's connections (iterating a snapshot)."""
    conns: list[Any] = [Conn("alice", f"dc_{n}") for n in range(3)]
    bob = Conn("bob", "dc_9")
    registry = registry_of(*conns, bob)
    registry.fail_peer("alice", ConnectionClosedError("left"))
    assert all(len(c.errors) == 1 for c in conns)
    assert list(registry) == [bob]
