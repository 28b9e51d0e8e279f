"""The cluster's typed operations (what waits in the outbox) and Redis calls (what a batch becomes).

An instance queues :data:`Op` values in its outbox, in the order the broker saw
them; the writer takes a batch of them and :func:`.batch.compile_batch` turns it
into :data:`Call` values, each carrying the indexes (in the batch) of the
operations it answers:

* :class:`Route` (relay ``frame`` to ``dst``) becomes part of a :class:`Direct`
  PUBLISH to the cached owner of ``dst``, or of one :class:`RouteCall`;
* :class:`Publish` (a raw batch for another instance's channel) and
  :class:`Eval` (one script call with its callbacks) stand for themselves.

Pure: no I/O (the scripts are named by :class:`~.scripts.Lua`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeAlias

import attrs

from .scripts import Lua

__all__ = ["Call", "Direct", "Eval", "Mode", "Op", "Publish", "Route", "RouteCall"]


class Mode(str, enum.Enum):
    """How :data:`~.scripts.ROUTE` handles a message whose id is offline."""

    #: Relay; queue it if the id is offline.
    RELAY = "r"
    #: Relay; drop it if the id is offline (LEAVE, EXPIRE).
    NOTICE = "n"
    #: Queue it (its id left the instance it was sent to).
    QUEUE = "q"


@attrs.define(slots=True)
class Route:
    """Relay ``frame`` from ``src`` to ``dst``, a client of another instance (or offline)."""

    dst: str
    frame: str
    src: str
    mode: Mode


@attrs.define(slots=True)
class Publish:
    """PUBLISH ``payload`` (a batch of entries, see :mod:`.codec`) on ``channel``."""

    channel: str
    payload: bytes


@attrs.define(slots=True)
class Eval:
    """Run ``script``; then ``done(reply)``, or ``failed()`` if Redis could not run it."""

    script: Lua
    keys: list[str]
    args: list[str]
    done: Callable[[Any], None] | None = None
    failed: Callable[[], None] | None = None


#: One outbox operation.
Op: TypeAlias = "Route | Publish | Eval"


@attrs.define(slots=True)
class Direct:
    """Routes to one cached owner: one PUBLISH on the instance's own connection."""

    owner: str
    channel: str
    payload: bytes
    indexes: list[int]


@attrs.define(slots=True)
class RouteCall:
    """Routes whose owner is not cached: one :data:`~.scripts.ROUTE` call."""

    keys: list[str]
    args: list[str]
    indexes: list[int]


#: One Redis call of a batch; an :class:`Eval` or :class:`Publish` stands for itself.
Call: TypeAlias = "Direct | RouteCall | Eval | Publish"
