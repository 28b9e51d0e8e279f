"""One WebSocket's life in the broker, whichever transport carries it.

Two transports feed the same broker: the built-in server
(:class:`peerpy_server.connection.Connection`, an asyncio protocol) and the
ASGI application (:mod:`peerpy_server.asgi`, under uvicorn or any ASGI
server).  Both subclass :class:`Session`, which holds what does not depend on
how bytes move:

* registration once the handshake is accepted (:meth:`Session.register`): the
  ``key``/``id``/``token`` query parameters go to :meth:`Realm.connect`, or to
  :meth:`Cluster.claim` in cluster mode, which answers later through
  :meth:`Session.claimed`;
* the message rate limit (a token bucket of ``rate_burst`` messages refilled
  at ``rate_limit`` per second; past it the WebSocket is closed with 1008 and
  unregistered) and the message size limit (1009);
* unregistration when the socket is gone (:meth:`Session.gone`).

A transport provides :meth:`send` and :meth:`close` (the realm's
:class:`~peerpy_server.realm.Link`), :meth:`abort`, :meth:`ping` and
:attr:`is_websocket`, which the broker's timers and shutdown use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar, Final
from urllib.parse import parse_qs

from .realm import Client, truncate

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["Session"]

logger: Final = logging.getLogger("peerpy_server.connection")


class Session:
    """One WebSocket (or a connection that may become one), as the broker sees it."""

    __slots__ = ("_broker", "_client", "_refilled", "_tokens", "active", "ip", "opened_at")

    #: Whether the broker's ping timer pings this transport's WebSockets (an
    #: ASGI server pings its own: uvicorn's ``ws_ping_interval``).
    PINGED: ClassVar[bool] = True

    def __init__(self, broker: Broker, ip: str = "?") -> None:
        self._broker = broker
        self._client: Client | None = None
        #: Set by every read; the broker's ping timer clears it.
        self.active = True
        self.opened_at = broker.now()
        #: The remote address (per-address limits).
        self.ip = ip
        self._tokens = float(broker.config.rate_burst)  # messages allowed now (rate limit)
        self._refilled = self.opened_at

    # -- provided by the transport -------------------------------------------

    def send(self, frame: str) -> bool:
        """Send one text frame; ``False`` if the client got cut off (the realm's Link)."""
        raise NotImplementedError

    def close(self, code: int | None = None, reason: str = "") -> None:
        """Start the closing handshake (the realm's Link)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection now."""
        raise NotImplementedError

    def ping(self) -> None:
        """Send a WebSocket ping (only called when :attr:`PINGED`)."""

    @property
    def is_websocket(self) -> bool:
        """Whether the WebSocket handshake completed."""
        raise NotImplementedError

    def claimed(self, client: Client | None) -> None:
        """Cluster mode: the claim started by :meth:`register` is settled."""
        raise NotImplementedError

    # -- shared logic --------------------------------------------------------

    def register(self, query: str) -> bool:
        """Register the accepted WebSocket with the query string of its request.

        Return ``True`` if the answer is pending (cluster mode: :meth:`claimed`
        is called once Redis answered, possibly before this returns).
        """
        broker = self._broker
        params = parse_qs(query, keep_blank_values=True)

        def first(name: str) -> str:
            values = params.get(name)
            return values[0] if values else ""

        key, peer_id, token = first("key"), first("id"), first("token")
        if broker.cluster is None:
            self._client = broker.realm.connect(
                self, key=key, peer_id=peer_id, token=token, now=broker.now()
            )
            return False
        broker.cluster.claim(self, key=key, peer_id=peer_id, token=token, done=self.claimed)
        return True

    def message(self, data: str | bytes) -> None:
        """Handle one complete message (rate-limited, relayed by the realm)."""
        client = self._client
        if client is None:
            return  # refused or left: the socket is closing
        broker = self._broker
        now = broker.now()
        if self._refill(now):
            self._tokens -= 1.0
            if self._tokens < 0.0:
                self._over_rate(client)
                return
        broker.realm.receive(client, data, now)

    def too_big(self) -> None:
        """A message over ``max_message_size`` arrived: close with 1009 and unregister."""
        self._broker.stats.refuse("too-big")
        self._warn("too-big", "Closed %s (1009): message too big", self._name())
        self.unregister()
        self.close(1009, "message too big")

    def gone(self) -> None:
        """The socket is gone: forget it (idempotent)."""
        self._broker.forget(self)
        self.unregister()

    def unregister(self) -> None:
        """Detach the client, if any, from the realm; later messages are dropped."""
        client = self._client
        if client is not None:
            self._client = None
            self._broker.realm.disconnect(client)

    def _refill(self, now: float) -> bool:
        """Refill the rate limit's token bucket; ``False`` if there is no rate limit."""
        config = self._broker.config
        rate = config.rate_limit
        if rate is None:
            return False
        tokens = self._tokens + (now - self._refilled) * rate
        self._tokens = min(tokens, float(config.rate_burst))
        self._refilled = now
        return True

    def _over_rate(self, client: Client) -> None:
        """Close a WebSocket that sends faster than the rate limit (1008) and unregister it."""
        self._broker.stats.refuse("rate-limit")
        self._warn("rate-limit", "Closed %s (1008): it sent more than the rate limit", self._name())
        self._client = None
        self._broker.realm.disconnect(client)
        self.close(1008, "message rate limit exceeded")

    def _warn(self, key: str, msg: str, *args: object) -> None:
        broker = self._broker
        broker.warnings.warning(logger, key, broker.now(), msg, *args)

    def _name(self) -> str:
        client = self._client
        return truncate(client.id) if client is not None else self.ip
