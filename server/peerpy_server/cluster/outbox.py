"""The outbox: one instance's operations waiting for Redis, in order, bounded.

Every operation of one instance goes through it, written to Redis in batches
by one task: a relay, a claim and a release are applied in the order the
broker saw them, and messages from one sender keep their order.  Past
``limit`` operations (Redis slow or unreachable) :meth:`Outbox.add` refuses
and the caller answers at once.  Pure: no I/O.
"""

from __future__ import annotations

from .ops import Op

__all__ = ["Outbox"]


class Outbox:
    """Operations waiting for the writer, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._ops: list[Op] = []

    def __len__(self) -> int:
        return len(self._ops)

    def add(self, op: Op, *, bounded: bool = True) -> bool:
        """Queue ``op``; ``False`` (not queued) when the outbox is full and ``bounded``.

        Unbounded: the small notices to other instances (``x``, ``s`` entries)
        that answer what was already admitted.
        """
        if bounded and len(self._ops) >= self._limit:
            return False
        self._ops.append(op)
        return True

    def take(self, most: int) -> list[Op]:
        """Remove and return the oldest operations, at most ``most``."""
        batch = self._ops[:most]
        del self._ops[:most]
        return batch
