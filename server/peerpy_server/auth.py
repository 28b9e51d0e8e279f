"""Who may register an id: JSON Web Tokens in PeerJS's ``token`` parameter.

With ``--jwt-secret`` (HS256) or ``--jwt-public-key`` (RS256 or ES256) the
broker checks the token a client sends on its WebSocket handshake
(``/peerjs?key=...&id=...&token=JWT``; a browser PeerJS page passes
``new Peer(id, {token: jwt})``).  The token must verify, its ``sub`` claim
must be the id being registered or ``*`` (any id), and its ``exp`` claim,
when present, must be in the future (no leeway).  Otherwise the client gets
a PeerJS ``ERROR`` whose message says why, and the socket is closed.

The JWT is also the client's reconnection token: a same-token takeover works
as without JWT (the same JWT again), and ``GET <path><key>/ice`` compares it.
"""

from __future__ import annotations

from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = ["JwtAuthorizer"]

#: The algorithms accepted with a public key (with a secret: HS256 only).
PUBLIC_KEY_ALGORITHMS: Final = ("RS256", "ES256")


class JwtAuthorizer:
    """Check ``(id, token)`` pairs; ``authorize`` returns ``None`` or the reason to refuse."""

    __slots__ = ("_algorithms", "_key")

    def __init__(self, *, secret: str | None = None, public_key: str | None = None) -> None:
        if (secret is None) == (public_key is None):
            raise ValueError("give exactly one of a JWT secret and a JWT public key")
        self._key: Any
        if secret is not None:
            if not secret:
                raise ValueError("the JWT secret is empty")
            self._key = secret
            self._algorithms = ["HS256"]
        else:
            assert public_key is not None
            try:
                self._key = load_pem_public_key(public_key.encode())
            except (ValueError, TypeError) as exc:
                raise ValueError(f"cannot load the JWT public key: {exc}") from None
            self._algorithms = list(PUBLIC_KEY_ALGORITHMS)

    def authorize(self, peer_id: str, token: str) -> str | None:
        """``None`` if ``token`` lets its bearer register ``peer_id``, else why not."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                options={"require": ["sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            return "Invalid token: expired"
        except jwt.InvalidTokenError:
            return "Invalid token: not a valid JWT for this server"
        subject = claims.get("sub")
        if subject != peer_id and subject != "*":
            return "Invalid token: its sub claim is not this id"
        return None
