"""Relay routing (peerpy.routing): each relayed message reaches its connection, or is dropped."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
from peerpy_protocol.messages import CLUSTER_UNAVAILABLE, Relay, RelayType
from peerpy_protocol.payloads import (
    AnswerPayload,
    CandidatePayload,
    ConnectionType,
    IceCandidateInit,
    OfferPayload,
    SessionDescription,
)

from peerpy.exceptions import ConnectionClosedError, PeerError, PeerUnavailableError
from peerpy.registry import Registry
from peerpy.routing import Router

SDP = SessionDescription("answer", "v=0\r\n")


@attrs.define(eq=False)
class Conn:
    """A connection as routing sees it: what it was delivered, how it failed."""

    peer: str
    connection_id: str
    originator: bool = True
    _remote_set: bool = False
    _started_at: float = 0.0
    delivered: list[Any] = attrs.Factory(list)
    errors: list[PeerError] = attrs.Factory(list)

    def deliver(self, signal: Any) -> None:
        self.delivered.append(signal)

    def _fail(self, error: PeerError) -> None:
        self.errors.append(error)


@attrs.define
class Setup:
    router: Router
    registry: Registry
    offers: list[tuple[str, OfferPayload]]


@pytest.fixture
def setup() -> Setup:
    registry = Registry()
    offers: list[tuple[str, OfferPayload]] = []
    router = Router(
        registry, lambda src, offer: offers.append((src, offer)), logging.getLogger("peerpy.test")
    )
    return Setup(router, registry, offers)


def add(setup: Setup, conn: Conn) -> Conn:
    setup.registry.add(conn)  # type: ignore[arg-type]
    return conn


def test_answer_and_candidate_reach_their_connection(setup: Setup) -> None:
    """ANSWER and CANDIDATE go to the connection (src, connectionId), in order."""
    conn = add(setup, Conn("alice", "dc_1"))
    other = add(setup, Conn("alice", "dc_2"))
    answer = AnswerPayload(SDP, ConnectionType.DATA, "dc_1")
    candidate = CandidatePayload(
        IceCandidateInit("candidate:1 1 udp 1 127.0.0.1 9 typ host", "0", 0),
        ConnectionType.DATA,
        "dc_1",
    )
    setup.router.route(Relay(RelayType.ANSWER, src="alice", payload=answer.to_json()))
    setup.router.route(Relay(RelayType.CANDIDATE, src="alice", payload=candidate.to_json()))
    assert conn.delivered == [answer, candidate]
    assert other.delivered == []


def test_a_message_for_no_live_connection_is_dropped(setup: Setup) -> None:
    """An ANSWER from another id, or for an unknown connection id, reaches nobody."""
    conn = add(setup, Conn("alice", "dc_1"))
    answer = AnswerPayload(SDP, ConnectionType.DATA, "dc_1").to_json()
    setup.router.route(Relay(RelayType.ANSWER, src="mallory", payload=answer))
    setup.router.route(
        Relay(RelayType.ANSWER, src="alice", payload={**answer, "connectionId": "dc_9"})
    )
    assert conn.delivered == []
    assert conn.errors == []


def test_offer_goes_to_the_offer_handler(setup: Setup) -> None:
    """An OFFER is parsed and handed over with its sender."""
    offer = OfferPayload(
        sdp=SessionDescription("offer", "v=0\r\n"),
        type=ConnectionType.DATA,
        connection_id="dc_1",
        label="chat",
        serialization="json",
        reliable=True,
    )
    setup.router.route(Relay(RelayType.OFFER, src="alice", payload=offer.to_json()))
    assert setup.offers == [("alice", offer)]


def test_leave_fails_every_connection_with_the_sender(setup: Setup) -> None:
    """LEAVE: the remote is gone, so each of its connections fails."""
    conns = [add(setup, Conn("alice", f"dc_{n}", originator=n == 0)) for n in range(2)]
    bob = add(setup, Conn("bob", "dc_3"))
    setup.router.route(Relay(RelayType.LEAVE, src="alice"))
    assert [type(c.errors[0]) for c in conns] == [ConnectionClosedError] * 2
    assert bob.errors == []


def test_expire_fails_only_our_unanswered_connections_to_the_sender(setup: Setup) -> None:
    """EXPIRE: the broker has no such peer; outgoing connections still waiting fail."""
    waiting = add(setup, Conn("ghost", "dc_1"))
    answered = add(setup, Conn("ghost", "dc_2", remote_set=True))
    setup.router.route(Relay(RelayType.EXPIRE, src="ghost"))
    assert [type(e) for e in waiting.errors] == [PeerUnavailableError]
    assert "Could not connect to peer ghost" in str(waiting.errors[0])
    assert answered.errors == []


@pytest.mark.parametrize(
    ("payload", "cause"),
    [
        (None, False),
        ({"reason": CLUSTER_UNAVAILABLE, "msg": "..."}, True),
        ({"reason": "something-else"}, False),
        ("cluster-unavailable", False),
    ],
)
def test_an_expire_from_an_unreachable_cluster_store_names_it(
    setup: Setup, payload: object, cause: bool
) -> None:
    """Our broker's EXPIRE for a message Redis failed to route says so; others do not."""
    waiting = add(setup, Conn("bob", "dc_1"))
    setup.router.route(Relay(RelayType.EXPIRE, src="bob", payload=payload))
    [error] = waiting.errors
    assert str(error).startswith("Could not connect to peer bob")
    assert ("cluster store is unreachable" in str(error)) is cause
    assert ("no peer is registered as 'bob'" in str(error)) is not cause


def test_an_expire_says_how_long_we_waited_and_why() -> None:
    """PeerUnavailableError names the wait (from the connection's start, on the clock
    given) and the cause: nobody registered as the id; what to check."""
    registry = Registry()
    now = [100.0]
    router = Router(registry, lambda src, offer: None, logging.getLogger("t"), lambda: now[0])
    early = Conn("ghost", "dc_1", started_at=93.0)
    late = Conn("ghost", "dc_2", started_at=99.5)
    for conn in (early, late):
        registry.add(conn)  # type: ignore[arg-type]
    router.route(Relay(RelayType.EXPIRE, src="ghost"))
    assert str(early.errors[0]) == (
        "Could not connect to peer ghost: the broker gave up after 7.0 s because no peer is "
        "registered as 'ghost' (it keeps an OFFER for an unknown id for its expire_timeout, "
        "then answers EXPIRE); check the id, and that both peers use the same broker, path "
        "and key"
    )
    assert "gave up after 0.5 s because" in str(late.errors[0])


@pytest.mark.parametrize(
    "message",
    [
        Relay(RelayType.ANSWER, src=None, payload={}),
        Relay(RelayType.LEAVE, src=""),
        Relay(RelayType.ANSWER, src="alice", payload={"connectionId": "dc_1"}),
        Relay(RelayType.CANDIDATE, src="alice", payload=["not", "an", "object"]),
        Relay(RelayType.OFFER, src="alice", payload={"type": "data"}),
    ],
    ids=["no-src", "empty-src", "answer-without-sdp", "candidate-not-object", "offer-bad"],
)
def test_malformed_messages_are_logged_and_dropped(
    setup: Setup, message: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """A message without src or with a bad payload harms no connection and raises nothing."""
    conn = add(setup, Conn("alice", "dc_1"))
    setup.router.route(message)
    assert conn.delivered == []
    assert conn.errors == []
    assert setup.offers == []
    assert any(r.levelno == logging.WARNING for r in caplog.records)
