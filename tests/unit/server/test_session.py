"""One session's logic (peerpy_server.core.session) on a fake host with a hand-moved clock."""

from __future__ import annotations

import pytest

from .fakes import FakeClaims, FakeHost, FakeSession

OFFER = '{"type":"OFFER","dst":"bob","payload":1}'


def registered(host: FakeHost, peer_id: str) -> FakeSession:
    """A session registered through :meth:`Session.register` (no cluster)."""
    session = FakeSession(host)
    assert session.register(f"key=peerjs&id={peer_id}&token=t") is False
    assert peer_id in host.realm
    return session


def joined(host: FakeHost, peer_id: str) -> FakeSession:
    """A session registered with the realm directly (what a settled claim does)."""
    session = FakeSession(host)
    assert host.realm.connect(session, key="peerjs", peer_id=peer_id, token="t", now=0.0)
    return session


def test_spend_allows_a_burst_then_refuses() -> None:
    """``rate_burst`` messages pass at once; the next one, at the same instant, does not."""
    session = FakeSession(FakeHost(rate_limit=10.0, rate_burst=3))
    assert [session.spend(0.0) for _ in range(4)] == [True, True, True, False]


def test_spend_refills_at_the_rate_up_to_the_burst() -> None:
    """Tokens come back at ``rate_limit`` per second and never pile up past ``rate_burst``."""
    session = FakeSession(FakeHost(rate_limit=10.0, rate_burst=3))
    assert all(session.spend(0.0) for _ in range(3))
    assert session.spend(0.1)  # one token back after 1/rate seconds
    assert not session.spend(0.1)
    # A long silence refills to the burst, no more (from below zero too).
    assert [session.spend(100.0) for _ in range(4)] == [True, True, True, False]


def test_messages_past_the_rate_close_with_1008_and_unregister() -> None:
    """Past the burst the socket is closed (1008), unregistered, counted; later messages drop."""
    host = FakeHost(rate_limit=2.0, rate_burst=3)
    bob = registered(host, "bob")
    alice = registered(host, "alice")
    for _ in range(3):
        alice.message(OFFER)
    assert len(bob.frames) == 1 + 3  # OPEN and three OFFERs
    alice.message(OFFER)
    assert alice.closed == (1008, "message rate limit exceeded")
    assert "alice" not in host.realm
    assert host.stats.refused == {"rate-limit": 1}
    host.clock = 10.0
    alice.message(OFFER)  # no client any more: dropped
    assert len(bob.frames) == 4


def test_rate_refills_with_the_host_clock() -> None:
    """A sender at the limit may send again once the clock moved ``1/rate`` seconds."""
    host = FakeHost(rate_limit=2.0, rate_burst=1)
    bob = registered(host, "bob")
    alice = registered(host, "alice")
    alice.message(OFFER)
    host.clock = 0.5
    alice.message(OFFER)
    assert len(bob.frames) == 3
    assert alice.closed is None


def test_spend_without_rate_limit_always_passes() -> None:
    """``rate_limit=None``: no bucket, every message goes through."""
    host = FakeHost(rate_limit=None)
    alice = registered(host, "alice")
    assert all(alice.spend(0.0) for _ in range(10_000))
    assert alice.closed is None


def test_over_rate_without_client_only_refuses() -> None:
    """Spending past the limit on a session with no client drops the frame, closes nothing."""
    host = FakeHost(rate_limit=1.0, rate_burst=1)
    session = FakeSession(host)
    assert session.spend(0.0)
    assert not session.spend(0.0)
    assert session.closed is None
    assert host.stats.refused == {}


def test_too_big_closes_with_1009_and_unregisters() -> None:
    """A message over the size limit: 1009, unregistered, counted."""
    host = FakeHost()
    alice = registered(host, "alice")
    alice.too_big()
    assert alice.closed == (1009, "message too big")
    assert "alice" not in host.realm
    assert host.stats.refused == {"too-big": 1}


def test_cut_off_counts_and_aborts() -> None:
    """A client that does not read is counted as slow-reader and its connection dropped."""
    host = FakeHost()
    alice = registered(host, "alice")
    alice.cut_off()
    assert alice.aborted
    assert host.stats.refused == {"slow-reader": 1}


def test_gone_forgets_and_unregisters_once() -> None:
    """A socket gone is forgotten by the host and its id freed; a second call changes nothing."""
    host = FakeHost()
    alice = registered(host, "alice")
    alice.gone()
    alice.gone()
    assert "alice" not in host.realm
    assert host.forgotten == [alice, alice]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("id=alice&token=t", "No id, token, or key supplied to websocket server"),
        ("key=other&id=alice&token=t", "Invalid key provided"),
    ],
)
def test_register_refused_leaves_no_client(query: str, error: str) -> None:
    """A refused registration answers ERROR, closes, and later messages are dropped."""
    host = FakeHost()
    session = FakeSession(host)
    assert session.register(query) is False
    assert session.frames == [{"type": "ERROR", "payload": {"msg": error}}]
    assert session.closed == (None, "")
    session.message(OFFER)
    assert len(host.realm) == 0


def test_cluster_claim_attaches_when_settled() -> None:
    """In cluster mode registration is pending until the claim is settled, then attached."""
    claims = FakeClaims()
    host = FakeHost(cluster=claims)
    session = FakeSession(host)
    assert session.register("key=peerjs&id=alice&token=t") is True
    [(peer_id, done)] = claims.pending
    assert peer_id == "alice"
    client = host.realm.connect(session, key="peerjs", peer_id="alice", token="t", now=0.0)
    done(client)
    assert session.attaches == 1
    bob = joined(host, "bob")
    session.message(OFFER)
    assert bob.frames[-1] == {"type": "OFFER", "src": "alice", "dst": "bob", "payload": 1}


def test_claim_settled_after_the_socket_left_frees_the_id() -> None:
    """A claim that succeeds after the socket left unregisters the id at once."""
    claims = FakeClaims()
    host = FakeHost(cluster=claims)
    session = FakeSession(host)
    session.register("key=peerjs&id=alice&token=t")
    session.gone_away = True
    client = host.realm.connect(session, key="peerjs", peer_id="alice", token="t", now=0.0)
    claims.pending[0][1](client)
    assert "alice" not in host.realm
    assert session.attaches == 0


def test_claim_refused_attaches_no_client() -> None:
    """A refused claim still wakes the transport, with no client: messages are dropped."""
    claims = FakeClaims()
    host = FakeHost(cluster=claims)
    session = FakeSession(host)
    session.register("key=peerjs&id=alice&token=t")
    claims.pending[0][1](None)
    assert session.attaches == 1
    bob = joined(host, "bob")
    session.message(OFFER)
    assert bob.frames == [{"type": "OPEN"}]
