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
code: parsing and dispatch, no socket, no clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from peerpy_protocol.messages import Relay, RelayType, store_unreachable
from peerpy_protocol.payloads import AnswerPayload, CandidatePayload, OfferPayload

from .exceptions import ConnectionClosedError, PeerError, PeerUnavailableError
from .registry import Registry

__all__ = ["OfferHandler", "Router"]

#: Called with ``(src, offer)`` for each OFFER.
OfferHandler = Callable[[str, OfferPayload], None]


class Router:
    """Routes relayed messages to the connections of one :class:`Registry`."""

    def __init__(self, registry: Registry, on_offer: OfferHandler, logger: logging.Logger) -> None:
        self._registry = registry
        #: Where OFFERs go (a test may wrap it to watch them).
        self.on_offer = on_offer
        self._log = logger

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
            reason = ""
            if store_unreachable(message):  # our broker's cluster could not route it
                reason = f": the broker's cluster store is unreachable ({src} may exist)"
            self._registry.fail_pending(
                PeerUnavailableError(f"Could not connect to peer {src}{reason}"), src
            )
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
