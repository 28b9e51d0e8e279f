"""The outbox: one instance's operations waiting for Redis, in order, bounded in bytes.

Every operation of one instance goes through it, written to Redis in batches
by one task: a relay, a claim and a release are applied in the order the
broker saw them, and messages from one sender keep their order.

Bounds (Redis slow, frozen or unreachable): at most ``limit`` operations, and
the bytes they hold (counted as the realm counts its queues: ``sys.getsizeof``
of each frame plus :data:`OP_OVERHEAD`) at most ``max_bytes`` in all and
``max_sender_bytes`` per sender, from :meth:`Outbox.add` until the writer is
:meth:`Outbox.done` with them.  Past a bound :meth:`Outbox.add` refuses and the
caller answers at once (EXPIRE, ERROR).  Pure: no I/O.
"""

from __future__ import annotations

import sys
from typing import Final

from .ops import Eval, Op, Route

__all__ = ["OP_OVERHEAD", "Outbox"]

#: Bytes one operation costs besides its frame or payload: the attrs object,
#: its list slot, its share of the batch's calls and replies (rounded up).
OP_OVERHEAD: Final = 160

_sizeof: Final = sys.getsizeof


def cost(op: Op) -> int:
    """The bytes ``op`` holds while it waits (see the module docstring)."""
    if isinstance(op, Route):
        return OP_OVERHEAD + _sizeof(op.frame)
    if isinstance(op, Eval):
        return OP_OVERHEAD + sum(map(_sizeof, op.keys)) + sum(map(_sizeof, op.args))
    return OP_OVERHEAD + _sizeof(op.payload)


class Outbox:
    """Operations waiting for the writer, within ``limit`` operations and the byte bounds."""

    def __init__(self, limit: int, *, max_bytes: int, max_sender_bytes: int) -> None:
        self._limit = limit
        self._max_bytes = max_bytes
        self._max_sender_bytes = max_sender_bytes
        self._ops: list[Op] = []
        #: Bytes held by the operations waiting or being written.
        self.bytes = 0
        self._senders: dict[str, int] = {}  # bytes per sender, for its routes

    def __len__(self) -> int:
        return len(self._ops)

    def sender_bytes(self, src: str) -> int:
        """Bytes held by the routes of ``src`` (waiting or being written)."""
        return self._senders.get(src, 0)

    def add(self, op: Op, *, bounded: bool = True) -> bool:
        """Queue ``op``; ``False`` (not queued) past a bound, if ``bounded``.

        Unbounded: the small notices to other instances (``x``, ``s`` entries)
        that answer what was already admitted.
        """
        size = cost(op)
        src = op.src if isinstance(op, Route) else None
        if bounded and (
            len(self._ops) >= self._limit
            or self.bytes + size > self._max_bytes
            or (src is not None and self._senders.get(src, 0) + size > self._max_sender_bytes)
        ):
            return False
        self._ops.append(op)
        self.bytes += size
        if src is not None:
            self._senders[src] = self._senders.get(src, 0) + size
        return True

    def take(self, most: int) -> list[Op]:
        """Remove and return the oldest operations, at most ``most`` (still counted)."""
        batch = self._ops[:most]
        del self._ops[:most]
        return batch

    def done(self, batch: list[Op]) -> None:
        """The writer is done with ``batch`` (from :meth:`take`): its bytes are free."""
        senders = self._senders
        for op in batch:
            size = cost(op)
            self.bytes -= size
            if isinstance(op, Route):
                left = senders[op.src] - size
                if left:
                    senders[op.src] = left
                else:
                    del senders[op.src]
