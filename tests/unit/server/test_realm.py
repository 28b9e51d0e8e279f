"""The realm's public accessors (core.realm); its rules: tests/server/test_realm.py."""

from __future__ import annotations

from peerpy_server.config import BrokerConfig
from peerpy_server.core.realm import Realm

from .fakes import FakeHost, FakeSession


def test_client_and_clients_read_the_registry() -> None:
    """``client(id)`` is the registered record; ``clients()`` lists them oldest HEARTBEAT first."""
    host = FakeHost()
    realm = host.realm
    sessions = {}
    for peer_id in ("alice", "bob"):
        sessions[peer_id] = session = FakeSession(host)
        session.register(f"key=peerjs&id={peer_id}&token=t")
    alice = realm.client("alice")
    assert alice is not None
    assert (alice.id, alice.token, alice.link) == ("alice", "t", sessions["alice"])
    assert realm.client("carol") is None
    assert [c.id for c in realm.clients()] == ["alice", "bob"]
    realm.receive(alice, '{"type":"HEARTBEAT"}', 1.0)
    assert [c.id for c in realm.clients()] == ["bob", "alice"]


def test_clients_of_an_empty_realm() -> None:
    """No registration: no record."""
    realm = Realm(BrokerConfig(port=0))
    assert list(realm.clients()) == []
