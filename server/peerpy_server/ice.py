"""The ICE servers the broker hands its peers: its own STUN and time-limited TURN.

TURN credentials follow coturn's REST-API scheme (``use-auth-secret``, the
"TURN REST API" draft): for peer ``ID`` and a secret shared with coturn's
``static-auth-secret``,

* ``username`` is ``<expiry>:<ID>``, the expiry in Unix seconds;
* ``credential`` is ``base64(HMAC-SHA1(secret, username))``.

coturn recomputes the credential from the username and refuses it once the
expiry has passed, so no long-lived TURN password is ever handed out and the
broker never talks to coturn.  All functions here are pure (the clock is an
argument), except :func:`warn_if_turn_is_open`, which logs.

Who gets TURN: any client that registers an id gets credentials from
``/ice``, valid ``turn_ttl`` seconds, still valid after it disconnects.
Without JWT (``--jwt-*``), anyone can register an id, so anyone can relay
through coturn; the broker says so at startup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .config import BrokerConfig

__all__ = ["ice_servers", "turn_credentials", "warn_if_turn_is_open"]

logger: Final = logging.getLogger("peerpy_server.ice")


def turn_credentials(secret: str, peer_id: str, ttl: float, now: float) -> tuple[str, str]:
    """coturn REST-API ``(username, credential)`` for ``peer_id``, valid ``ttl`` seconds."""
    username = f"{int(now + ttl)}:{peer_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def _host_of(host_header: str) -> str:
    """The host part of an HTTP ``Host`` header (IPv6 literals in brackets)."""
    host = host_header.strip()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"  # a bare IPv6 literal (not valid HTTP, but unambiguous)
    except ValueError:
        pass
    return host.partition(":")[0]


def ice_servers(
    *,
    peer_id: str,
    now: float,
    host_header: str | None,
    stun_port: int | None,
    turn_urls: tuple[str, ...],
    turn_secret: str | None,
    turn_ttl: float,
) -> list[dict[str, Any]]:
    """The ``RTCIceServer`` dicts for one peer, as ``GET {path}{key}/ice`` answers them.

    The broker's own STUN (when ``stun_port`` is set) is named after the host
    the peer reached the broker by (its ``Host`` header), so it works behind
    DNS names and reverse proxies alike.
    """
    servers: list[dict[str, Any]] = []
    if stun_port is not None and host_header:
        servers.append({"urls": f"stun:{_host_of(host_header)}:{stun_port}"})
    if turn_urls and turn_secret:
        username, credential = turn_credentials(turn_secret, peer_id, turn_ttl, now)
        servers.append({"urls": list(turn_urls), "username": username, "credential": credential})
    return servers


def warn_if_turn_is_open(config: BrokerConfig) -> bool:
    """Log a WARNING if TURN credentials go to anyone who registers (TURN, no JWT).

    Return whether it warned.
    """
    if not config.turn_urls or config.jwt_secret is not None or config.jwt_public_key is not None:
        return False
    logger.warning(
        "TURN credentials are handed to anyone who registers an id (--turn-url without "
        "--jwt-secret/--jwt-public-key): anyone can relay traffic through your TURN server "
        "for %.0f s per id (--turn-ttl); require JWTs, and deny private and other "
        "non-public peer addresses in coturn (docs/deploy.md)",
        config.turn_ttl,
    )
    return True
