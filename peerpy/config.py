"""Where the broker is, which ICE servers to use, timeouts and limits.

Every setting can come from a keyword argument or from the environment, and
the keyword wins:

``PEERPY_SERVER``
    The broker URL, e.g. ``http://127.0.0.1:9000/`` or ``https://broker.example/myapp/``.
    Without it (and without ``host=``) peers use :data:`DEFAULT_SERVER`, the
    bundled broker's default address on this machine.  Several comma-separated
    URLs name brokers of one cluster (``peerpy-server --redis``): a peer starts
    on the first and ``auto_reconnect`` moves to the next when one is gone.
    The word ``peerjs`` names :data:`PEERJS_CLOUD`, the PeerJS project's
    public broker, with PeerJS's default ICE servers (never a default).
``PEERPY_ICE_SERVERS``
    Comma-separated ICE server URLs (``stun:host:port``,
    ``turn:user:secret@host:port``); empty means none.  Default: none.
``PEERPY_ICE_ADDRESSES``
    Comma-separated local addresses ICE may gather candidates on (see
    :class:`peerpy.network.NetworkPolicy`).  Default: every interface.

Default ICE servers: **none**.  PeerJS defaults to Google's public STUN server
and PeerJS's public TURN servers.  peerpy contacts no third party unless asked:
without ICE servers, peers on one machine or one LAN connect directly; across
NATs, name your STUN/TURN servers in ``PEERPY_ICE_SERVERS``.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from aiortc import RTCConfiguration, RTCIceServer

from .exceptions import ConfigurationError, UsageError
from .network import NetworkPolicy, check_remote_gone
from .serialization import Limits as DecodingLimits

__all__ = [
    "DEFAULT_SERVER",
    "PEERJS_CLOUD",
    "PEERJS_ICE_SERVERS",
    "Limits",
    "ServerAddress",
    "Timeouts",
    "parse_ice_servers",
    "resolve_ice",
    "resolve_network",
    "resolve_rtc_configuration",
    "resolve_server",
    "resolve_servers",
]

#: The broker peers use when neither ``host=``, ``server=`` nor PEERPY_SERVER says.
DEFAULT_SERVER = "http://127.0.0.1:9000/"
#: ``server="peerjs"``: the PeerJS project's public cloud broker, as PeerJS 1.5.5
#: builds it with no options.  It sees every peer's id and addresses (never the
#: data, which goes peer to peer, encrypted); it is never used unless named.
PEERJS_CLOUD = "https://0.peerjs.com:443/"
#: The ICE servers PeerJS 1.5.5 uses by default (``util.defaultConfig``): Google's
#: STUN server and the PeerJS project's TURN servers; the ``peerjs`` preset's.
PEERJS_ICE_SERVERS: tuple[str, ...] = (
    "stun:stun.l.google.com:19302",
    "turn:peerjs:peerjsp@eu-0.turn.peerjs.com:3478",
    "turn:peerjs:peerjsp@us-0.turn.peerjs.com:3478",
)
_PRESETS = {"peerjs": PEERJS_CLOUD}


@attrs.frozen
class ServerAddress:
    """A PeerJS broker: ``{scheme}://{host}:{port}{path}`` and the API key."""

    host: str
    port: int
    path: str = "/"
    secure: bool = False
    key: str = "peerjs"

    @classmethod
    def from_url(cls, url: str, *, key: str = "peerjs") -> ServerAddress:
        """Parse ``http[s]://host[:port][/path]`` (``ws[s]://`` works too)."""
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ConfigurationError(
                f"broker URL must look like http://host:port/path, got {url!r}"
            )
        secure = parts.scheme in ("https", "wss")
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            raise ConfigurationError(f"broker URL has a bad port: {url!r}") from None
        return cls(parts.hostname, port, normalize_path(parts.path), secure, key)

    @property
    def base_url(self) -> str:
        """``http[s]://host:port/path/``, the broker's HTTP API root."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}{self.path}"

    def websocket_url(
        self, peer_id: str, token: str, version: str, extensions: Sequence[str] = ()
    ) -> str:
        """The signaling WebSocket URL PeerJS 1.5 builds (spec §1.3).

        ``extensions`` (e.g. ``["rooms"]``) adds ``ext=rooms``: the peerpy
        extensions we speak, which our broker then confirms in its OPEN;
        PeerJS's ``peer`` ignores the parameter.
        """
        query = {"key": self.key, "id": peer_id, "token": token, "version": version}
        if extensions:
            query["ext"] = ",".join(extensions)
        return "ws" + self.base_url[4:] + "peerjs?" + urllib.parse.urlencode(query)


def normalize_path(path: str) -> str:
    """Make ``path`` start and end with ``/``, as PeerJS does."""
    path = path or "/"
    if not path.startswith("/"):
        path = "/" + path
    if not path.endswith("/"):
        path += "/"
    return path


def resolve_servers(
    server: str | Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    **options: Any,
) -> tuple[ServerAddress, ...]:
    """Every broker of a cluster: ``server`` (a list or comma-separated URLs), else
    ``PEERPY_SERVER`` (comma-separated), each resolved by :func:`resolve_server`."""
    if server is None:
        server = environ.get("PEERPY_SERVER") or DEFAULT_SERVER
    urls = server.split(",") if isinstance(server, str) else list(server)
    urls = [url.strip() for url in urls if url.strip()] or [DEFAULT_SERVER]
    return tuple(resolve_server(server=url, environ=environ, **options) for url in urls)


def resolve_server(
    *,
    server: str | None = None,
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    secure: bool | None = None,
    key: str = "peerjs",
    environ: Mapping[str, str] = os.environ,
) -> ServerAddress:
    """Decide which broker to use: keywords, then ``PEERPY_SERVER``, then the default.

    ``server`` is a URL; ``host``/``port``/``path``/``secure`` are PeerJS's
    options and override the matching parts of the URL.
    """
    url = server or environ.get("PEERPY_SERVER") or DEFAULT_SERVER
    base = ServerAddress.from_url(_PRESETS.get(url.strip().lower(), url), key=key)
    if host is not None and host != base.host:
        # A new host: the URL's port and path belong to another broker.
        secure_value = bool(secure) if secure is not None else False
        base = ServerAddress(host, 443 if secure_value else 9000, "/", secure_value, key)
    return ServerAddress(
        host=base.host,
        port=port if port is not None else base.port,
        path=normalize_path(path) if path is not None else base.path,
        secure=secure if secure is not None else base.secure,
        key=key,
    )


def parse_ice_servers(value: str) -> list[RTCIceServer]:
    """Parse PEERPY_ICE_SERVERS: comma-separated URLs, credentials as ``user:secret@``."""
    servers = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        scheme, sep, rest = item.partition(":")
        if not sep or scheme not in ("stun", "stuns", "turn", "turns") or not rest:
            raise ConfigurationError(f"ICE server must be stun:/turn: URL, got {item!r}")
        if "@" in rest:
            userinfo, _, hostport = rest.rpartition("@")
            username, _, credential = userinfo.partition(":")
            servers.append(RTCIceServer(f"{scheme}:{hostport}", username, credential))
        else:
            servers.append(RTCIceServer(item))
    return servers


def resolve_rtc_configuration(
    ice_servers: Sequence[RTCIceServer | str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
) -> RTCConfiguration:
    """Build aiortc's configuration: ``ice_servers``, else PEERPY_ICE_SERVERS, else none."""
    if ice_servers is None:
        servers = parse_ice_servers(environ.get("PEERPY_ICE_SERVERS", ""))
    else:
        servers = [
            server if isinstance(server, RTCIceServer) else parse_ice_servers(server)[0]
            for server in ice_servers
        ]
    return RTCConfiguration(iceServers=servers)


def resolve_ice(
    ice_servers: Sequence[RTCIceServer | str] | None,
    configuration: RTCConfiguration | None,
    *,
    servers: Sequence[ServerAddress] = (),
    environ: Mapping[str, str] = os.environ,
) -> tuple[RTCConfiguration, bool]:
    """A peer's configuration, and whether to ask the broker for ICE servers instead.

    ``configuration`` wins, then ``ice_servers``, then PEERPY_ICE_SERVERS;
    with none of them set, the ``peerjs`` preset's (:data:`PEERJS_ICE_SERVERS`)
    when ``servers`` is the PeerJS cloud, else the broker's, fetched once registered.
    """
    if configuration is None and ice_servers is None and "PEERPY_ICE_SERVERS" not in environ:
        if servers and all(is_peerjs_cloud(server) for server in servers):
            return resolve_rtc_configuration(PEERJS_ICE_SERVERS, environ=environ), False
        return resolve_rtc_configuration(None, environ=environ), True
    return configuration or resolve_rtc_configuration(ice_servers, environ=environ), False


def is_peerjs_cloud(server: ServerAddress) -> bool:
    """Whether ``server`` is the PeerJS project's public broker (the ``peerjs`` preset)."""
    return server.host == ServerAddress.from_url(PEERJS_CLOUD).host


def resolve_network(
    ice_addresses: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
) -> NetworkPolicy:
    """Build the ICE network policy: ``ice_addresses``, else PEERPY_ICE_ADDRESSES.

    When every allowed local address is a loopback one, remote candidates are
    restricted to loopback too: nothing else is reachable from those sockets.
    """
    if ice_addresses is None:
        raw = environ.get("PEERPY_ICE_ADDRESSES", "")
        ice_addresses = [part.strip() for part in raw.split(",") if part.strip()] or None
    if not ice_addresses:
        return NetworkPolicy()
    addresses = tuple(ice_addresses)
    try:
        loopback_only = all(ipaddress.ip_address(a).is_loopback for a in addresses)
    except ValueError as exc:
        raise ConfigurationError(f"ICE address must be an IP address: {exc}") from None
    remote = ("127.0.0.0/8", "::1/128") if loopback_only else None
    return NetworkPolicy(local_addresses=addresses, remote_networks=remote)


def _positive_delay(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0):
        raise ConfigurationError(f"Timeouts.{attribute.name} must be a positive number of seconds")


def _optional_delay(instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if value is not None:
        _positive_delay(instance, attribute, value)  # type: ignore[arg-type]


def _check_remote_gone(instance: object, attribute: object, value: object) -> None:
    try:
        check_remote_gone(value)
    except UsageError as exc:
        raise ConfigurationError(str(exc)) from None


@attrs.frozen
class Timeouts:
    """How long each wait may last, in seconds."""

    #: From opening the signaling WebSocket to the broker's OPEN.
    open: float = 10.0
    #: From ``connect()``/``call()`` to an open connection (answer, ICE, DTLS, channel).
    negotiation: float = 30.0
    #: ``close(flush=True)`` waiting for the remote to close.
    close: float = 5.0
    #: Interval between HEARTBEAT messages to the broker (PeerJS: 5 s).
    heartbeat: float = 5.0
    #: The broker socket counts as dead (the session ends, ``auto_reconnect``
    #: registers again) when a WebSocket ping gets no pong for this long; a
    #: ping goes every half of it, and the socket's local address is checked
    #: every second (see :mod:`peerpy.keepalive`).  ``None``: websockets' own
    #: keepalive (a ping every 20 s, 20 s for its pong) and no address check.
    broker_gone: float | None = attrs.field(default=5.0, validator=_optional_delay)
    #: ``auto_reconnect``: the first wait after losing the broker, doubling on
    #: each failed attempt up to ``reconnect_max`` (each wait shortened at
    #: random by up to half), so a broker back after any outage is rejoined
    #: within ``reconnect_max`` plus one attempt.
    reconnect_initial: float = attrs.field(default=0.5, validator=_positive_delay)
    reconnect_max: float = attrs.field(default=3.0, validator=_positive_delay)
    #: From an incoming OFFER to an open data connection; a half-open incoming
    #: connection still negotiating after this is closed (see Limits.max_half_open).
    half_open: float = 10.0
    #: An open connection whose remote answered no ICE consent check for this
    #: long closes with :class:`~peerpy.exceptions.RemoteGoneError` (checks run
    #: about every second).  ``None``: aioice's own checks (47-50 s).
    remote_gone: float | None = attrs.field(default=8.0, validator=_check_remote_gone)
    #: A data connection between two peerpy peers whose peer connection is lost
    #: (ICE failed, ``remote_gone``) negotiates a new one through the broker and
    #: goes on (see :mod:`peerpy.resumption`); it gives up after this long.
    #: ``None``: never offer resumption (every connection behaves as PeerJS's).
    resume: float | None = attrs.field(default=60.0, validator=_optional_delay)


@attrs.frozen
class Limits:
    """Memory bounds for one connection."""

    #: Received values held for the application before it reads them; beyond
    #: this the connection is closed with an error instead of growing memory.
    #: Twice ``decoding.max_message_bytes``, so the largest value a peer may
    #: send always fits, with room for the next one arriving.
    receive_buffer_bytes: int = 128 * 1024 * 1024
    #: ``send()`` waits while the data channel buffers more than this...
    send_high_water: int = 4 * 1024 * 1024
    #: ...until it drains below this.
    send_low_water: int = 1024 * 1024
    #: Incoming connections not yet taken with ``accept()``.
    pending_connections: int = 64
    #: Live connections (each is an RTCPeerConnection with its sockets); an
    #: OFFER beyond this closes the oldest half-open one, or is refused if all
    #: are open, so a flood of OFFERs cannot exhaust us.
    max_connections: int = 256
    #: Half-open incoming connections (OFFER received, not yet open), in total
    #: and from one remote id.  An OFFER beyond either closes the oldest
    #: half-open one (of that id, or of all) to make room; open connections are
    #: never closed for this.  See Timeouts.half_open.
    max_half_open: int = 64
    max_half_open_per_peer: int = 8
    #: Bounds on decoding received messages (sizes, chunks, nesting).
    decoding: DecodingLimits = attrs.field(factory=DecodingLimits)
