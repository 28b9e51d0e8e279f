"""Peer ids, tokens and connection ids as PeerJS makes and checks them."""

from __future__ import annotations

import re
import secrets
import string
from typing import Final

from .exceptions import InvalidIdError

__all__ = ["ID_PATTERN", "connection_id", "is_valid_id", "random_token", "validate_id"]

#: The PeerJS 1.5 client's id rule: alphanumerics at both ends, single
#: ``' '``, ``'_'`` or ``'-'`` separators in the middle.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*")

_BASE36: Final = string.digits + string.ascii_lowercase


def is_valid_id(peer_id: str, pattern: re.Pattern[str] = ID_PATTERN) -> bool:
    """Tell whether ``peer_id`` matches ``pattern`` (PeerJS's rule by default)."""
    return pattern.fullmatch(peer_id) is not None


def validate_id(peer_id: str, pattern: re.Pattern[str] = ID_PATTERN) -> str:
    """Return ``peer_id`` or raise :class:`InvalidIdError` with PeerJS's message."""
    if not isinstance(peer_id, str) or not is_valid_id(peer_id, pattern):
        raise InvalidIdError(f'ID "{peer_id}" is invalid')
    return peer_id


def random_token(length: int = 11) -> str:
    """A random base-36 token like PeerJS's ``randomToken()``, from a CSPRNG."""
    return "".join(secrets.choice(_BASE36) for _ in range(length))


def connection_id(kind: str) -> str:
    """A new connection id: ``dc_…`` for data, ``mc_…`` for media."""
    prefix = {"data": "dc_", "media": "mc_"}[kind]
    return prefix + random_token()
