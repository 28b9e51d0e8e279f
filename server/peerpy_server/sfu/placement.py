"""Which Janus instance a room lives on, its VideoRoom number and its credentials: pure code.

Every broker of one Redis cluster must reach the same answers without asking
each other, so each is a function of the room's name, the instance list
(``--janus``, in any order) and the key the brokers share (``--janus-key``):

* **placement** is rendezvous hashing: each instance gets the score
  ``sha256(url, room)`` and the room lives on the *live* instance with the
  highest score (:func:`ranking`, :func:`choose`).  Adding or removing one
  instance moves only the rooms whose best instance it is; when an instance
  dies its rooms go to their second-best, and come back when it returns.
* the VideoRoom **room number** is 53 bits of ``sha256(room)`` (a safe integer
  in JavaScript too: browsers read it), never 0 (:func:`room_number`);
* the room **secret** (which only brokers use: create, destroy, allow, kick)
  and **PIN** (which members must give to join) are HMAC-SHA256 of the key,
  the instance and the room (:func:`credentials`); the PIN alone does not let
  anyone publish: each admitted member also gets a random **token**
  (:func:`mint_token`) the broker adds to the room's allowed list and removes
  when the member leaves;
* each member's VideoRoom **participant id** is HMAC-SHA256 of the key, the
  instance, the room and the member id, cut to 53 bits (:func:`participant_id`):
  Janus does not tie a token to a display name, so a member could show itself
  as another; the broker gives each member its id, and any participant whose
  id is not the one of the member its display name claims is an impostor
  (every broker of the cluster can tell, no member can forge another's id).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable
from typing import Final

import attrs

__all__ = [
    "Instance",
    "choose",
    "credentials",
    "mint_token",
    "parse_instance",
    "participant_id",
    "ranking",
    "room_number",
]

#: Largest room number: JavaScript's Number.MAX_SAFE_INTEGER.
MAX_ROOM: Final = 2**53 - 1


@attrs.frozen
class Instance:
    """One Janus: the ``url`` the broker uses, and the ``public_url`` handed to members."""

    url: str
    public_url: str


def parse_instance(text: str) -> Instance:
    """``URL`` or ``URL,PUBLIC_URL`` (``--janus``): ``ValueError`` unless both are ws(s)://."""
    url, _, public = (part.strip() for part in text.partition(","))
    public = public or url
    for value in (url, public):
        if not value.startswith(("ws://", "wss://")):
            raise ValueError(f"a Janus WebSocket URL starts with ws:// or wss://, not {value!r}")
    return Instance(url, public)


def _score(url: str, room: str) -> bytes:
    return hashlib.sha256(f"{url}\0{room}".encode()).digest()


def ranking(room: str, instances: Iterable[Instance]) -> list[Instance]:
    """``instances`` best first for ``room`` (rendezvous hashing; ties cannot matter)."""
    return sorted(instances, key=lambda instance: _score(instance.url, room), reverse=True)


def choose(room: str, instances: Iterable[Instance], live: Collection[str]) -> Instance | None:
    """The instance ``room`` lives on: its best one whose url is in ``live`` (``None``: none)."""
    for instance in ranking(room, instances):
        if instance.url in live:
            return instance
    return None


def room_number(room: str) -> int:
    """The VideoRoom room number of ``room`` (1 to 2**53 - 1)."""
    value = int.from_bytes(hashlib.sha256(room.encode()).digest()[:8], "big") & MAX_ROOM
    return value or 1


def credentials(key: bytes, instance: Instance, room: str) -> tuple[str, str]:
    """``(secret, pin)`` of ``room`` on ``instance`` for brokers sharing ``key``."""

    def mac(label: str) -> str:
        message = f"{label}\0{instance.url}\0{room}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    return mac("secret"), mac("pin")[:24]


def participant_id(key: bytes, instance: Instance, room: str, member: str) -> int:
    """The VideoRoom participant id of ``member`` in ``room`` on ``instance`` (1 to 2**53 - 1)."""
    message = f"participant\0{instance.url}\0{room}\0{member}".encode()
    value = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big") & MAX_ROOM
    return value or 1


def mint_token() -> str:
    """A fresh member token (128 random bits)."""
    return secrets.token_urlsafe(16)
