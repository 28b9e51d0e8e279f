"""One WebSocket's life in the broker, whichever transport carries it.

Two transports feed the same broker: the built-in server
(:class:`peerpy_server.transports.websocket.TcpSession`, an asyncio protocol)
and the ASGI application (:class:`peerpy_server.transports.asgi.AsgiSession`,
under uvicorn or any ASGI server).  Both subclass :class:`Session`, which holds
what does not depend on how bytes move:

* registration once the handshake is accepted (:meth:`Session.register`): the
  ``key``/``id``/``token`` query parameters (and ``ext=rooms``, asking for the
  rooms extension, :mod:`peerpy_protocol.rooms`) go to :meth:`Realm.connect`, or to
  :meth:`Cluster.claim` in cluster mode, which answers later through
  :meth:`Session.claimed` (a socket that left meanwhile is unregistered at once);
* the message rate limit (:meth:`Session.spend`: a token bucket of
  ``rate_burst`` messages refilled at ``rate_limit`` per second; past it the
  WebSocket is closed with 1008 and unregistered) and the message size limit
  (:meth:`Session.too_big`, 1009);
* the cut-off of a client that does not read what it is sent
  (:meth:`Session.cut_off`);
* unregistration when the socket is gone (:meth:`Session.gone`).

A transport provides :meth:`send` and :meth:`close` (the realm's
:class:`~peerpy_server.core.realm.Link`), :meth:`abort`, :meth:`ping`,
:attr:`is_websocket` and :attr:`closing`, and :meth:`attached` (what to do once
a claim is settled).  The session reaches the broker only through
:class:`~peerpy_server.core.host.Host`.  Nothing here does I/O or reads a
clock: the host's ``now()`` is the only time source.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar, Final
from urllib.parse import parse_qs

from peerpy_protocol.rooms import wants_rooms

from .host import Registration
from .realm import Client, truncate

if TYPE_CHECKING:
    from .host import Host

__all__ = ["Session"]

# Named after the module that held this code first: operators filter on it.
logger: Final = logging.getLogger("peerpy_server.connection")


class Session:
    """One WebSocket (or a connection that may become one), as the broker sees it."""

    __slots__ = (
        "_burst",
        "_client",
        "_cut",
        "_host",
        "_rate",
        "_refilled",
        "_tokens",
        "active",
        "ip",
        "opened_at",
    )

    #: Whether the broker's ping timer pings this transport's WebSockets (an
    #: ASGI server pings its own: uvicorn's ``ws_ping_interval``).
    PINGED: ClassVar[bool] = True

    def __init__(self, host: Host, ip: str = "?") -> None:
        self._host = host
        self._client: Client | None = None
        self._cut = False  # cut off for not reading (see cut_off)
        #: Set by every read; the broker's ping timer clears it.
        self.active = True
        self.opened_at = host.now()
        #: The remote address (per-address limits).
        self.ip = ip
        # The rate limit's token bucket (see spend).
        self._rate = host.config.rate_limit
        self._burst = float(host.config.rate_burst)
        self._tokens = self._burst  # messages allowed now; negative once over the limit
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

    @property
    def closing(self) -> bool:
        """Whether the socket is gone or going (a settled claim then is let go)."""
        raise NotImplementedError

    def attached(self) -> None:
        """Cluster mode: the claim is settled and the session kept; read again."""
        raise NotImplementedError

    # -- shared logic --------------------------------------------------------

    def register(self, query: str) -> bool:
        """Register the accepted WebSocket with the query string of its request.

        Return ``True`` if the answer is pending (cluster mode: :meth:`claimed`
        is called once Redis answered, possibly before this returns).
        """
        host = self._host
        params = parse_qs(query, keep_blank_values=True)

        def first(name: str) -> str:
            values = params.get(name)
            return values[0] if values else ""

        key, peer_id, token = first("key"), first("id"), first("token")
        rooms = wants_rooms(first("ext"))
        cluster = host.cluster
        if cluster is None:
            self._client = host.realm.connect(
                self, key=key, peer_id=peer_id, token=token, now=host.now(), rooms=rooms
            )
            return False
        cluster.claim(self, Registration(key, peer_id, token, rooms), self.claimed)
        return True

    def claimed(self, client: Client | None) -> None:
        """Cluster mode: the claim started by :meth:`register` is settled."""
        if client is not None and self.closing:
            self._host.realm.disconnect(client)  # it left while its claim was pending
            return
        self._client = client
        self.attached()

    def spend(self, now: float) -> bool:
        """Count one message (or frame) against the rate limit; ``False`` if it is over it.

        A token bucket: ``rate_burst`` tokens at most, refilled at
        ``rate_limit`` per second; each message takes one.  Over the limit,
        the WebSocket is closed with 1008 and unregistered: what it sends next
        is dropped.  Every transport counts through here, once per frame on the
        relay's hot path, hence the inlined arithmetic.
        """
        rate = self._rate
        if rate is None:
            return True
        tokens = self._tokens
        if now != self._refilled:  # several frames of one read share a ``now``
            tokens += (now - self._refilled) * rate
            if tokens > self._burst:
                tokens = self._burst
            self._refilled = now
        tokens -= 1.0
        self._tokens = tokens
        if tokens >= 0.0:
            return True
        client = self._client
        if client is not None:
            self._over_rate(client)
        return False

    def message(self, data: str | bytes) -> None:
        """Handle one complete message (rate-limited, relayed by the realm)."""
        client = self._client
        if client is None:
            return  # refused or left: the socket is closing
        now = self._host.now()
        if self.spend(now):
            self._host.realm.receive(client, data, now)

    def too_big(self) -> None:
        """A message over ``max_message_size`` arrived: close with 1009 and unregister."""
        self._host.stats.refuse("too-big")
        self._warn("too-big", "Closed %s (1009): message too big", self._name())
        self.unregister()
        self.close(1009, "message too big")

    def cut_off(self) -> None:
        """The client does not read what it is sent: count it, warn, drop the connection."""
        self._cut = True
        self._host.stats.refuse("slow-reader")
        self._warn("slow-reader", "Cut off %s: it does not read what it is sent", self._name())
        self.abort()

    def gone(self) -> None:
        """The socket is gone: forget it (idempotent)."""
        self._host.forget(self)
        self.unregister()

    def unregister(self) -> None:
        """Detach the client, if any, from the realm; later messages are dropped."""
        client = self._client
        if client is not None:
            self._client = None
            self._host.realm.disconnect(client)

    def _over_rate(self, client: Client) -> None:
        """Close a WebSocket that sends faster than the rate limit (1008) and unregister it."""
        self._host.stats.refuse("rate-limit")
        self._warn("rate-limit", "Closed %s (1008): it sent more than the rate limit", self._name())
        self._client = None
        self._host.realm.disconnect(client)
        self.close(1008, "message rate limit exceeded")

    def _warn(self, key: str, msg: str, *args: object) -> None:
        host = self._host
        host.warnings.warning(logger, key, host.now(), msg, *args)

    def _name(self) -> str:
        client = self._client
        return truncate(client.id) if client is not None else self.ip
