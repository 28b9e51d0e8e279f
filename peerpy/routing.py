"""Relay routing: where each message the broker relays to a peer goes.

The broker relays OFFER, ANSWER, CANDIDATE, LEAVE and EXPIRE from other
peers, in order, on the peer's one signaling session.  :class:`Router` sends
each where it belongs:

=========  ==============================================================
OFFER      the peer's OFFER handler (admission, then a new connection)
ANSWER     the connection ``(src, connectionId)``, if it is live
CANDIDATE  the same (``Connection.deliver``; applied by its own task)
LEAVE      every connection with ``src`` fails: the remote left
EXPIRE     our outgoing connections to ``src`` still waiting fail:
           the broker has no such peer (``PeerUnavailableError``), or
           its cluster store was unreachable (the payload says so)
=========  ==============================================================

A message without ``src``, a malformed payload or one for no live connection
is logged and dropped; nothing a remote sends can end the session.  Pure
code: parsing and dispatch, no socket; the clock, which only dates how long
an unknown id was waited for, is passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from peerpy_protocol.messages import Relay, RelayType, store_unreachable
from peerpy_protocol.payloads import AnswerPayload, CandidatePayload, OfferPayload

from .exceptions import ConnectionClosedError, PeerError, PeerUnavailableError
from .registry import Registry

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["OfferHandler", "Router"]

#: Called with ``(src, offer)`` for each OFFER.
OfferHandler = Callable[[str, OfferPayload], None]


class Router:
    """Routes relayed messages to the connections of one :class:`Registry`."""

    def __init__(
        self,
        registry: Registry,
        on_offer: OfferHandler,
        logger: logging.Logger,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._registry = registry
        #: Where OFFERs go (a test may wrap it to watch them).
        self.on_offer = on_offer
        self._log = logger
        self._clock = clock

    def route(self, message: Relay) -> None:
        """Route one relayed message (call in arrival order)."""
        src = message.src
        if not src:
            self._log.warning("ignoring %s without src", message.type.value)
            return
        if message.type is RelayType.LEAVE:
            self._registry.fail_peer(src, ConnectionClosedError(f"{src} left the broker"))
            return
        if message.type is RelayType.EXPIRE:
            unreachable = store_unreachable(message)  # our broker's cluster could not route it
            self._registry.fail_pending(lambda conn: self._expired(conn, unreachable), src)
            return
        try:
            if message.type is RelayType.OFFER:
                self.on_offer(src, OfferPayload.from_json(message.payload))
                return
            signal: AnswerPayload | CandidatePayload
            if message.type is RelayType.ANSWER:
                signal = AnswerPayload.from_json(message.payload)
            else:
                signal = CandidatePayload.from_json(message.payload)
        except PeerError as exc:
            self._log.warning("ignoring a bad %s from %s: %s", message.type.value, src, exc)
            return
        target = self._registry.get(src, signal.connection_id)
        if target is None:
            self._log.debug(
                "no connection %s with %s for its %s", signal.connection_id, src, message.type.value
            )
            return
        target.deliver(signal)

    def _expired(self, conn: Connection, store_unreachable: bool) -> PeerUnavailableError:
        """The error of ``conn`` when the broker said EXPIRE: how long we waited, and why."""
        waited = ""
        if self._clock is not None:
            waited = f" after {self._clock() - conn._started_at:.1f} s"
        start = f"Could not connect to peer {conn.peer}: the broker gave up{waited}"
        if store_unreachable:
            return PeerUnavailableError(
                f"{start} because its cluster store is unreachable ({conn.peer} may exist)"
            )
        return PeerUnavailableError(
            f"{start} because no peer is registered as {conn.peer!r} "
            "(it keeps an OFFER for an unknown id for its expire_timeout, then answers EXPIRE); "
            "check the id, and that both peers use the same broker, path and key"
        )
