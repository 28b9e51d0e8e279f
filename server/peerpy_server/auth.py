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
So a token is a bearer secret for every id it names: whoever holds a
``sub: "*"`` token can take over any id registered with that same token (and
get its TURN credentials).  Mint ``*`` tokens per user, never one for many.

An optional ``rooms`` claim, a list of room names or ``fnmatch`` patterns
(``["lobby", "team-*"]``), restricts which rooms the token's bearer may join
(:meth:`JwtAuthorizer.may_join`; a refused join gets ``ROOM-ERROR``
``room-forbidden``).  Without the claim every room is allowed; a claim that is
not a list of strings allows none.

With ``audience`` (``--jwt-audience``) the token's ``aud`` claim must name it
(a token minted for another service is refused).  An HS256 secret shorter
than :data:`MIN_SECRET_BYTES` is refused when the authorizer is built
(:class:`WeakSecretError`; the CLI exits with status 2): a short HMAC key can
be brute-forced offline from any one token.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Final

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

if TYPE_CHECKING:
    from .config import BrokerConfig

__all__ = ["MIN_SECRET_BYTES", "JwtAuthorizer", "WeakSecretError"]

#: The algorithms accepted with a public key (with a secret: HS256 only).
PUBLIC_KEY_ALGORITHMS: Final = ("RS256", "ES256")
#: The shortest HS256 secret accepted, in bytes (UTF-8): the hash's output
#: size, as RFC 7518 §3.2 requires.
MIN_SECRET_BYTES: Final = 32


class WeakSecretError(ValueError):
    """The HS256 secret is shorter than :data:`MIN_SECRET_BYTES`."""


class JwtAuthorizer:
    """Check ``(id, token)`` pairs; ``authorize`` returns ``None`` or the reason to refuse."""

    __slots__ = ("_algorithms", "_audience", "_key")

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        audience: str | None = None,
    ) -> None:
        if (secret is None) == (public_key is None):
            raise ValueError("give exactly one of a JWT secret and a JWT public key")
        self._audience = audience
        self._key: Any
        if secret is not None:
            if not secret:
                raise ValueError("the JWT secret is empty")
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise WeakSecretError(
                    f"the JWT secret has {len(secret.encode())} bytes; HS256 needs at least "
                    f"{MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
                )
            self._key = secret
            self._algorithms = ["HS256"]
        else:
            assert public_key is not None
            try:
                self._key = load_pem_public_key(public_key.encode())
            except (ValueError, TypeError) as exc:
                raise ValueError(f"cannot load the JWT public key: {exc}") from None
            self._algorithms = list(PUBLIC_KEY_ALGORITHMS)

    @classmethod
    def from_config(cls, config: BrokerConfig) -> JwtAuthorizer:
        """The authorizer for ``config``'s ``jwt_secret``/``jwt_public_key``/``jwt_audience``."""
        return cls(
            secret=config.jwt_secret,
            public_key=config.jwt_public_key,
            audience=config.jwt_audience,
        )

    def may_join(self, token: str, room: str) -> bool:
        """Whether ``token`` (already accepted when its client registered) lets it join ``room``.

        The signature is checked again, its expiry is not: the token was valid
        when the socket was opened, and the socket stays.
        """
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                options={"verify_exp": False, "verify_aud": self._audience is not None},
            )
        except jwt.InvalidTokenError:
            return False
        patterns = claims.get("rooms")
        if patterns is None:
            return True
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            return False
        return any(fnmatch.fnmatchcase(room, pattern) for pattern in patterns)

    def authorize(self, peer_id: str, token: str) -> str | None:
        """``None`` if ``token`` lets its bearer register ``peer_id``, else why not."""
        audience = self._audience
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=audience,
                options={
                    "require": ["sub"] if audience is None else ["sub", "aud"],
                    "verify_aud": audience is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            return "Invalid token: expired"
        except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError) as exc:
            if audience is not None and (
                isinstance(exc, jwt.InvalidAudienceError) or exc.claim == "aud"
            ):
                return "Invalid token: not for this audience"
            return "Invalid token: not a valid JWT for this server"
        except jwt.InvalidTokenError:
            return "Invalid token: not a valid JWT for this server"
        subject = claims.get("sub")
        if subject != peer_id and subject != "*":
            return "Invalid token: its sub claim is not this id"
        return None
