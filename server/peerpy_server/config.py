"""The broker's configuration: one frozen attrs class, seconds as floats.

The first group of options mirrors ``peer`` 1.0.2 (same names, same defaults
except that times are seconds rather than milliseconds).  The second group
holds the limits that ``peer`` does not have; each one is a documented
difference (see ``docs/broker.md``).  ``None`` turns an optional limit off.

>>> BrokerConfig(port=0, path="myapp/").path
'/myapp'
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable
from typing import Any

import attrs
from peerpy_protocol.ids import ID_PATTERN

__all__ = ["BrokerConfig", "normalize_path"]


def normalize_path(path: str) -> str:
    """Return ``path`` with one leading ``/`` and no trailing ``/`` (``"/"`` stays ``"/"``).

    ``peer`` accepts ``myapp``, ``/myapp`` and ``/myapp/`` for the same mount
    point; so do we.
    """
    stripped = path.strip("/")
    return "/" + stripped if stripped else "/"


def _optional_positive(instance: Any, attribute: Any, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


def _host(value: str | Iterable[str] | None) -> str | tuple[str, ...] | None:
    return value if value is None or isinstance(value, str) else tuple(value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class BrokerConfig:
    """Everything the broker needs to know to run.

    ``peer`` 1.0.2 options:

    * ``host``: address to listen on, or a tuple of them; ``None`` means every
      interface (``peer``'s default).
    * ``port``: TCP port; ``0`` picks a free one (read it back from ``Broker.port``).
    * ``path``: mount path of the HTTP API; the WebSocket endpoint is ``{path}/peerjs``.
    * ``key``: the API key checked on the WebSocket handshake.
    * ``expire_timeout``: seconds a message for an offline id waits before its sender gets EXPIRE.
    * ``alive_timeout``: seconds without HEARTBEAT after which a client is dropped.
    * ``concurrent_limit``: the most ids registered at once.
    * ``allow_discovery``: serve the list of ids at ``GET {path}/{key}/peers``.
    * ``proxied``: accepted for parity; like ``peer`` 1.0.2 it changes nothing.
    * ``ssl_certfile`` / ``ssl_keyfile``: PEM files; both given means HTTPS/WSS.
      ``ssl_context`` may be given instead.
    * ``cors_origins``: ``None`` reflects any ``Origin`` (``peer``'s default);
      a tuple allows only those origins.

    Improvements over ``peer`` (each documented in ``docs/broker.md``):

    * ``id_pattern``: ids must match it (PeerJS's client rule by default);
      ``None`` accepts any non-empty id as ``peer`` does.
    * ``open_on_takeover``: send OPEN when a same-token reconnect takes an id over,
      and close the superseded socket.
    * ``max_queue_messages`` / ``max_queue_bytes``: bound each offline id's queue
      (messages; characters of JSON).
    * ``max_queued_bytes``: the memory budget of all queues together, counted as
      the bytes they really take (see ``peerpy_server.core.realm``'s overhead constants).
    * ``max_queues``: the most queued destinations at once (``None``: no cap but
      ``max_queued_bytes``); ``max_queues_per_sender``: the most offline ids one
      sender may have messages queued for.
    * ``max_message_size``: the largest WebSocket message accepted (bytes).
    * ``max_write_buffer``: a client whose unsent output exceeds this is cut off.
    * ``ping_interval``: WebSocket ping period; a socket that sent nothing for two
      periods is closed.  ``None`` disables pings.
    * ``handshake_timeout``: seconds a TCP connection may take to finish its request.
    * ``max_connections``: the most TCP connections at once (``None``:
      ``concurrent_limit + 1024``); when full, the oldest connection still in its
      handshake is closed to make room.
    * ``max_connections_per_ip`` / ``max_handshakes_per_ip``: the most TCP
      connections, and the most of them still in their handshake, from one
      address (``None`` turns the cap off).
    * ``rate_limit`` / ``rate_burst``: each WebSocket may send ``rate_limit``
      messages per second on average and ``rate_burst`` at once (a token
      bucket); past that it is closed with 1008 (``None``: no limit).
    * ``warning_interval``: repeated warnings of one kind are logged at most once
      per this many seconds, with a count of those suppressed (``None``: all).
    * ``jwt_secret`` / ``jwt_public_key``: the ``token`` of a WebSocket must be a
      JWT signed with this HS256 secret / verified by this PEM public key (RS256,
      ES256) whose ``sub`` is the id or ``*`` (see :mod:`peerpy_server.auth`).
    * ``jwt_audience``: with JWTs, the ``aud`` claim a token must carry (``None``:
      not checked).
    * ``room_max_members``: the most members of one room; ``rooms_per_client``:
      the most rooms one client is in; ``max_rooms``: the most rooms at once
      (cluster-wide in cluster mode); ``room_metadata_bytes``: the largest member
      metadata (compact JSON, UTF-8 bytes); ``None`` turns each one off.
      ``room_rate`` / ``room_burst``: each client may join or leave rooms
      ``room_rate`` times per second on average and ``room_burst`` at once;
      past that a join is refused with ``rate-limited`` (see :mod:`peerpy_server.core.rooms`).
    * ``redis_url`` / ``redis_prefix``: cluster mode, every broker on the same
      Redis and prefix shares one realm (see :mod:`peerpy_server.cluster`).
    * ``janus_urls``: Janus WebSocket API URLs (``URL`` or ``URL,PUBLIC_URL``,
      the second handed to members); with any, every room's media goes through
      Janus's VideoRoom (see :mod:`peerpy_server.sfu`).  ``janus_key``: the key
      room secrets and PINs derive from (give every broker of a cluster the same;
      ``None``: random per process); ``janus_admin_key``: VideoRoom's
      ``admin_key``, if Janus requires one to create rooms.
    """

    host: str | tuple[str, ...] | None = attrs.field(default=None, converter=_host)
    port: int = attrs.field(
        default=9000, validator=[attrs.validators.ge(0), attrs.validators.le(65535)]
    )
    path: str = attrs.field(default="/", converter=normalize_path)
    key: str = "peerjs"
    expire_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    alive_timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    concurrent_limit: int = attrs.field(default=5000, validator=attrs.validators.gt(0))
    allow_discovery: bool = False
    proxied: bool = False
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)
    cors_origins: tuple[str, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )

    id_pattern: re.Pattern[str] | None = ID_PATTERN
    open_on_takeover: bool = True
    max_queue_messages: int = attrs.field(default=256, validator=attrs.validators.gt(0))
    max_queue_bytes: int = attrs.field(default=1 << 20, validator=attrs.validators.gt(0))
    max_queued_bytes: int = attrs.field(default=64 << 20, validator=attrs.validators.gt(0))
    max_message_size: int = attrs.field(default=1 << 20, validator=attrs.validators.gt(0))
    max_write_buffer: int = attrs.field(default=1 << 20, validator=attrs.validators.gt(0))
    ping_interval: float | None = attrs.field(default=20.0, validator=_optional_positive)
    handshake_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    max_connections: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    # Abuse limits (docs/broker.md, "Limits"); None turns each one off.
    max_queues: int | None = attrs.field(default=50_000, validator=_optional_positive)
    max_queues_per_sender: int | None = attrs.field(default=256, validator=_optional_positive)
    max_connections_per_ip: int | None = attrs.field(default=1000, validator=_optional_positive)
    max_handshakes_per_ip: int | None = attrs.field(default=64, validator=_optional_positive)
    rate_limit: float | None = attrs.field(default=500.0, validator=_optional_positive)
    rate_burst: int = attrs.field(default=5000, validator=attrs.validators.gt(0))
    warning_interval: float | None = attrs.field(default=10.0, validator=_optional_positive)
    # Rooms (docs/rooms.md): how often a client may join or leave, then the
    # bounds; None turns each one off.
    room_rate: float | None = attrs.field(default=5.0, validator=_optional_positive)
    room_burst: int = attrs.field(default=32, validator=attrs.validators.gt(0))
    room_max_members: int | None = attrs.field(default=64, validator=_optional_positive)
    rooms_per_client: int | None = attrs.field(default=16, validator=_optional_positive)
    max_rooms: int | None = attrs.field(default=10_000, validator=_optional_positive)
    room_metadata_bytes: int | None = attrs.field(default=4096, validator=_optional_positive)
    # ICE servers for peers (docs/broker.md "STUN and TURN"): UDP port of the
    # built-in STUN responder (None: off); TURN URLs and the secret shared with
    # coturn's static-auth-secret; seconds minted TURN credentials stay valid.
    stun_port: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional([attrs.validators.ge(0), attrs.validators.le(65535)]),
    )
    turn_urls: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    turn_secret: str | None = attrs.field(default=None, repr=False)
    turn_ttl: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))
    # Production (docs/broker.md "Operating it"): JWT in the token parameter,
    # HS256 with jwt_secret or RS256/ES256 with jwt_public_key (PEM text).
    jwt_secret: str | None = attrs.field(default=None, repr=False)
    jwt_public_key: str | None = attrs.field(default=None, repr=False)
    jwt_audience: str | None = None
    # Cluster mode (peerpy_server.cluster): the Redis URL (None: in-memory
    # realm) and the prefix of every key and channel, so realms can share a Redis.
    redis_url: str | None = attrs.field(default=None, repr=False)
    redis_prefix: str = "peerpy:"
    # Rooms through an SFU (peerpy_server.sfu, docs/rooms.md).
    janus_urls: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    janus_key: str | None = attrs.field(default=None, repr=False)
    janus_admin_key: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile must be given together")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("the Redis URL must start with redis://, rediss:// or unix://")
        if self.jwt_secret is not None and self.jwt_public_key is not None:
            raise ValueError("give jwt_secret or jwt_public_key, not both")
        if bool(self.turn_urls) != bool(self.turn_secret):
            raise ValueError("turn_urls and turn_secret must be given together")
        for url in self.janus_urls:
            if not all(part.strip().startswith(("ws://", "wss://")) for part in url.split(",")):
                raise ValueError(f"a Janus URL starts with ws:// or wss://, got {url!r}")
        for url in self.turn_urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"a TURN URL starts with turn: or turns:, got {url!r}")

    @property
    def websocket_path(self) -> str:
        """The path of the WebSocket endpoint: ``{path}/peerjs``."""
        return self.path.rstrip("/") + "/peerjs"

    @property
    def connection_limit(self) -> int:
        """The effective cap on simultaneous TCP connections."""
        if self.max_connections is not None:
            return self.max_connections
        return self.concurrent_limit + 1024

    @property
    def tls(self) -> bool:
        """Whether the broker serves HTTPS/WSS."""
        return self.ssl_context is not None or self.ssl_certfile is not None

    def make_ssl_context(self) -> ssl.SSLContext | None:
        """Build the server TLS context from the PEM files (or return ``ssl_context``).

        Raise :class:`OSError` or :class:`ssl.SSLError` if the files cannot be loaded.
        """
        if self.ssl_context is not None:
            return self.ssl_context
        if self.ssl_certfile is None or self.ssl_keyfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context
