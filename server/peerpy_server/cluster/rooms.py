"""Rooms across the brokers of one Redis: :class:`RedisDirectory`.

The cluster-mode :class:`~peerpy_server.core.rooms.Directory`: members live in
Redis (``room:<name>``, ``rooms``, ``rm:<instance>``, ``rinst``, see
:mod:`.scripts`), so ``room_max_members`` and ``max_rooms`` hold cluster-wide
and a joiner's snapshot names the members of every broker.  Each operation
is one atomic script (:data:`~.scripts.ROOM_JOIN`, :data:`~.scripts.ROOM_LEAVE`)
queued in the instance's ordered outbox, so a join and a later leave reach
Redis in that order; the answers come back through callbacks.  The notices
(``ROOM-JOIN``, ``ROOM-LEAVE`` to the other members) are sent by the
:class:`~peerpy_server.core.rooms.Rooms` front through
:meth:`Cluster.deliver <peerpy_server.cluster.Cluster.deliver>`: to a local
client directly, else through the cluster's pub/sub routing.

A killed broker cannot say its members left: every instance marks itself
alive in ``rinst`` every third of ``alive_timeout`` (as it refreshes its ids),
and every tick one instance's :data:`~.scripts.ROOM_SWEEP` removes the members
of instances past their mark and hands the notices to :attr:`front`.  So the
others see them leave within ``alive_timeout`` (plus a tick), the bound within
which their ids are freed too.  Pure of I/O itself: it only queues operations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from peerpy_protocol.rooms import RoomErrorType

from .ops import Eval
from .scripts import Keys, Lua

if TYPE_CHECKING:
    from ..config import BrokerConfig
    from ..core.rooms import Joined, Rooms

__all__ = ["SWEEP_INSTANCES", "RedisDirectory"]

#: Most dead instances one :data:`~.scripts.ROOM_SWEEP` call clears.
SWEEP_INSTANCES: Final = 8


class RedisDirectory:
    """Room members in Redis for the instance ``instance`` (see the module docstring).

    ``push(op)`` queues a script call in the instance's outbox (it calls
    ``op.failed`` at once if the outbox is full).
    """

    def __init__(
        self, config: BrokerConfig, keys: Keys, instance: str, push: Callable[[Eval], None]
    ) -> None:
        self._keys = keys
        self._instance = instance
        self._push = push
        self._ttl_ms = str(int(config.alive_timeout * 1000))
        self._bounds = [str(config.room_max_members or 0), str(config.max_rooms or 0)]
        #: The rooms front, told of the members of dead instances (set by the broker).
        self.front: Rooms | None = None

    def join(self, room: str, peer_id: str, metadata: Any, done: Joined) -> None:
        """Add ``peer_id`` to ``room`` in Redis; ``done(other members or refusal)`` after."""
        instance = self._instance

        def joined(reply: Any) -> None:
            if reply[0] != "ok":
                done(RoomErrorType(reply[0]))
                return
            flat = reply[1]
            others: dict[str, Any] = {}
            for index in range(0, len(flat), 2):
                member = flat[index]
                if member != peer_id:
                    others[member] = json.loads(flat[index + 1].partition(" ")[2])
            done(others)

        def failed() -> None:
            done(RoomErrorType.ROOM_LIMIT)  # Redis unreachable: no room can be joined now

        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
        args = [instance, peer_id, text, *self._bounds, room, self._ttl_ms]
        self._push(Eval(Lua.ROOM_JOIN, self._keys.room_join(room, instance), args, joined, failed))

    def leave(self, room: str, peer_id: str, done: Callable[[list[str]], None]) -> None:
        """Remove ``peer_id`` from ``room`` if this instance holds it; ``done(remaining)`` after."""

        def left(reply: Any) -> None:
            if reply is not None:
                done(list(reply))

        keys = self._keys.room_join(room, self._instance)[:3]
        self._push(Eval(Lua.ROOM_LEAVE, keys, [self._instance, peer_id, room], left))

    def members(self, room: str, answer: Callable[[list[str]], None]) -> None:
        """Call ``answer(ids)`` with the members of ``room`` once Redis listed them."""
        self._push(
            Eval(Lua.ROOM_LIST, [self._keys.room(room)], [], lambda ids: answer(list(ids)),
                 lambda: answer([]))
        )  # fmt: skip

    def alive(self) -> Eval:
        """The call that marks this instance alive for ``alive_timeout`` more."""
        return Eval(Lua.ROOM_ALIVE, self._keys.room_sweep[:1], [self._instance, self._ttl_ms])

    def swept(self, reply: Any) -> None:
        """Tell the remaining members of the rooms a :data:`~.scripts.ROOM_SWEEP` cleared."""
        front = self.front
        if front is None:
            return
        for index in range(0, len(reply), 3):
            front.left(reply[index], reply[index + 1], reply[index + 2])
