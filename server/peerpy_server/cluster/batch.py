"""The batch compiler: a run of outbox operations into the fewest Redis calls.

Operations keep their order; each run of consecutive :class:`~.ops.Route`
operations becomes one :class:`~.ops.Direct` PUBLISH per instance for the ids
whose owner is cached (entries ``c``: relay or queue, ``m``: relay or drop;
the receiver checks that it holds the id and routes again if not), and one
:class:`~.ops.RouteCall` (:data:`~.scripts.ROUTE`) for the others.  A
:class:`~.ops.Publish` or :class:`~.ops.Eval` stands for itself.  Pure: no I/O,
no clock; the owner cache is only read.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .codec import entry
from .ops import Call, Direct, Mode, Op, Route, RouteCall
from .owners import OwnerCache
from .scripts import Keys

__all__ = ["BatchCompiler"]


@attrs.frozen
class BatchCompiler:
    """Compiles the batches of the instance ``instance`` (queue bounds for ROUTE)."""

    keys: Keys
    instance: str
    max_queue_messages: int
    max_queue_bytes: int
    #: The first entry of each direct batch: the instance that published it.
    header: bytes = attrs.field(init=False)

    @header.default
    def _header(self) -> bytes:
        return entry("f", self.instance, "")

    def compile(self, batch: Sequence[Op], owners: OwnerCache) -> list[Call]:
        """The Redis calls for ``batch``, in order; each names the operations it covers."""
        calls: list[Call] = []
        run: list[tuple[int, Route]] = []
        for index, op in enumerate(batch):
            if isinstance(op, Route):
                run.append((index, op))
                continue
            if run:
                self._run(run, owners, calls)
                run = []
            calls.append(op)  # Publish or Eval: itself
        if run:
            self._run(run, owners, calls)
        return calls

    def _run(self, run: list[tuple[int, Route]], owners: OwnerCache, calls: list[Call]) -> None:
        groups: dict[str, list[tuple[int, Route]]] = {}
        lookup: list[tuple[int, Route]] = []
        for item in run:
            route = item[1]
            owner = owners.get(route.dst) if route.mode is not Mode.QUEUE else None
            if owner is None:
                lookup.append(item)
            else:
                groups.setdefault(owner, []).append(item)
        for owner, items in groups.items():
            parts = [self.header]
            for _, route in items:
                parts.append(
                    entry("c" if route.mode is Mode.RELAY else "m", route.dst, route.frame)
                )
            calls.append(
                Direct(owner, self.keys.channel(owner), b"".join(parts), [i for i, _ in items])
            )
        if lookup:
            calls.append(self.route_call(lookup))

    def route_call(self, routes: Sequence[tuple[int, Route]]) -> RouteCall:
        """One ROUTE call for ``routes`` (each with its index in the batch)."""
        keys = self.keys
        args = [keys.prefix, keys.channels, str(self.max_queue_messages),
                str(self.max_queue_bytes), str(len(routes))]  # fmt: skip
        for _, route in routes:
            args += (route.dst, route.frame, route.src, route.mode.value)
        return RouteCall([keys.expiry], args, [index for index, _ in routes])
