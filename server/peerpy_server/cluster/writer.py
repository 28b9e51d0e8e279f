"""The cluster's writer: one instance's outbox written to Redis, batch by batch.

:class:`Writer` owns the outbox (:mod:`.outbox`) and the task that empties it
in order: each batch compiled to Redis calls (:mod:`.batch`, with the owner
cache of :mod:`.owners`), sent in one pipeline (:mod:`.wire`), each reply
handed back to its operation.  Nothing is lost silently: an operation the
outbox refuses (Redis slow, a backlog) or Redis does not take fails at once,
an :class:`~.ops.Eval` through its ``failed`` callback, a relayed message with
an EXPIRE to its sender saying that the cluster store failed
(:data:`STORE_UNREACHABLE`: the destination may exist).

What it tells the instance is one callback, ``reached(ok)``: whether Redis
answered a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from peerpy_protocol.messages import CLUSTER_UNAVAILABLE, RelayType, serialize_relay
from redis.exceptions import RedisError

from ..core.realm import truncate
from .batch import BatchCompiler
from .host import ClusterHost
from .ops import Direct, Eval, Mode, Op, Publish, Route, RouteCall
from .outbox import Outbox
from .owners import OwnerCache
from .wire import RETRY, Wire

__all__ = ["STORE_UNREACHABLE", "Writer"]

logger: Final = logging.getLogger("peerpy_server.cluster")

#: The payload of the EXPIRE a sender gets for a message Redis failed to route.
STORE_UNREACHABLE: Final = {
    "reason": CLUSTER_UNAVAILABLE,
    "msg": "Server could not route this message: its cluster store cannot be reached",
}
#: Most operations written to Redis in one pipeline.
BATCH: Final = 1000
#: Most operations waiting for Redis; past that (Redis slow or unreachable) a
#: new one fails at once: its sender gets EXPIRE, a registration an ERROR.
OUTBOX_LIMIT: Final = 100_000
#: One sender may hold at most this share of ``max_queued_bytes`` in the outbox
#: (and at least two messages of ``max_message_size``).
SENDER_SHARE: Final = 8
#: Seconds a batch may wait for Redis before health says the cluster is stalled.
STALLED_AFTER: Final = 1.0
#: The result given to the operations of a batch Redis did not take.
_FAILED: Final = ConnectionError("Redis unreachable")


class Writer:
    """The outbox of one instance and the loop (:meth:`run`) that writes it to Redis.

    ``reached(ok)`` is called after each batch: ``True`` if Redis took it.
    """

    def __init__(
        self,
        broker: ClusterHost,
        wire: Wire,
        compiler: BatchCompiler,
        owners: OwnerCache,
        reached: Callable[[bool], None],
    ) -> None:
        config = broker.config
        budget = config.max_queued_bytes
        per_sender = max(budget // SENDER_SHARE, 2 * config.max_message_size)
        self._outbox = Outbox(OUTBOX_LIMIT, max_bytes=budget, max_sender_bytes=per_sender)
        self._broker = broker
        self._wire = wire
        self._compiler = compiler
        self._owners = owners
        self._reached = reached
        self._wake = asyncio.Event()
        self._writing = False  # holds a batch not yet answered
        self._writing_since = 0.0  # broker.now() when that batch was sent
        self._expired: set[tuple[str, str]] = set()  # EXPIREs sent for the failed batch
        #: Set when the instance closes: :meth:`run` stops.
        self.closing = False

    @property
    def backlog(self) -> int:
        """Bytes held by the operations waiting for Redis (or being written)."""
        return self._outbox.bytes

    @property
    def busy(self) -> bool:
        """Operations wait for Redis, or a batch is being written."""
        return bool(self._outbox) or self._writing

    @property
    def stalled(self) -> bool:
        """A batch has waited more than :data:`STALLED_AFTER`, or the outbox holds
        over half its byte budget (Redis frozen or too slow: a backlog builds)."""
        broker = self._broker
        return (self._writing and broker.now() - self._writing_since > STALLED_AFTER) or (
            self._outbox.bytes > broker.config.max_queued_bytes // 2
        )

    # -- the outbox ----------------------------------------------------------------

    def route(self, src: str, dst: str, frame: str, mode: Mode) -> None:
        """Relay ``frame`` from ``src`` to ``dst`` through Redis (or EXPIRE ``src`` at once)."""
        # Consecutive routes are merged when written (see .batch).
        if self._outbox.add(Route(dst, frame, src, mode)):
            self._wake.set()
        else:
            self._refused(src)
            self._route_failed(src, dst, mode)

    def publish(self, channel: str, payload: bytes) -> None:
        """Publish ``payload`` on ``channel`` (an instance's), past the outbox's bounds."""
        self._outbox.add(Publish(channel, payload), bounded=False)
        self._wake.set()

    def push(self, op: Eval) -> None:
        """Run the script call ``op`` in order (or its ``failed`` callback at once)."""
        if self._outbox.add(op):
            self._wake.set()
            return
        self._refused("")
        if op.failed is not None:
            op.failed()

    def _refused(self, src: str) -> None:
        broker = self._broker
        broker.stats.refuse("cluster-backlog")
        broker.warnings.warning(
            logger, "cluster-backlog", broker.now(),
            "Redis too slow: %d bytes wait for it; refused an operation from %s",
            self._outbox.bytes, truncate(src) or "this broker",
        )  # fmt: skip

    def _route_failed(self, src: str, dst: str, mode: Mode) -> None:
        # Never a silent loss: the sender hears EXPIRE for what was not routed
        # (once per destination in a failed batch), saying that Redis failed:
        # dst may well exist (PeerJS ignores the payload).
        if mode is not Mode.NOTICE and (src, dst) not in self._expired:
            self._expired.add((src, dst))
            self._broker.stats.expired += 1
            frame = serialize_relay(RelayType.EXPIRE, dst, src, STORE_UNREACHABLE)
            self._broker.realm.deliver_local(src, frame)

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Write the outbox to Redis in order, one pipeline per batch, until :attr:`closing`.

        Cancelling it fails nothing already taken: the batch being written
        stays unanswered.
        """
        broker = self._broker
        while not self.closing:
            await self._wake.wait()
            await asyncio.sleep(0)  # let the reads already due add to this batch
            self._wake.clear()
            while self._outbox:
                batch = self._outbox.take(BATCH)
                self._writing = True
                self._writing_since = broker.now()
                try:
                    problem = await self._write(batch)
                except (RedisError, OSError) as exc:
                    problem = exc
                    self._failed(batch)
                finally:
                    self._writing = False
                    self._expired.clear()
                    self._outbox.done(batch)
                self._reached(problem is None)
                if problem is not None:
                    broker.warnings.warning(
                        logger, "redis", broker.now(), "Redis unreachable: %s", problem
                    )
                broker.write_gathered()
                if problem is not None:
                    await asyncio.sleep(RETRY)

    async def _write(self, batch: list[Op]) -> Exception | None:
        """One batch: one pipeline, then one ROUTE for the direct publishes nobody took.

        Each operation's callback (or, for an operation Redis could not run,
        its failure) is called once; if the pipeline fails, this raises before
        any is called; if only that second ROUTE fails, its routes fail (their
        senders get EXPIRE) and the error is returned.
        """
        calls = self._compiler.compile(batch, self._owners)
        replies = await self._wire.execute(calls)
        again: list[int] = []  # routes published to an owner that is gone
        for call, reply in zip(calls, replies, strict=True):
            if type(call) is Direct:
                if reply == 0:  # no subscriber: that instance is gone
                    self._owners.drop(call.owner)
                    again += call.indexes
                elif isinstance(reply, Exception):
                    self._routed(batch, call.indexes, reply)
            elif type(call) is RouteCall:
                self._routed(batch, call.indexes, reply)
            elif type(call) is Eval:
                _answer(call, reply)
        if again:
            # Through ROUTE now: it queues for the ids whose instance is gone.
            again.sort()
            call = self._compiler.route_call([(i, _route_at(batch, i)) for i in again])
            try:
                (reply,) = await self._wire.execute([call])
            except (RedisError, OSError) as exc:
                self._routed(batch, again, exc)
                return exc
            self._routed(batch, again, reply)
        return None

    def _routed(self, batch: list[Op], indexes: list[int], reply: Any) -> None:
        """Handle a ROUTE reply: cache the owners it names; EXPIRE if it failed."""
        if isinstance(reply, Exception):
            for index in indexes:
                route = _route_at(batch, index)
                self._route_failed(route.src, route.dst, route.mode)
            return
        for index, result in zip(indexes, reply, strict=True):
            if isinstance(result, str):
                self._owners.learn(_route_at(batch, index).dst, result)

    def _failed(self, batch: list[Op]) -> None:
        """Redis could not take ``batch``: every failure callback, every sender's EXPIRE."""
        for op in batch:
            if type(op) is Route:
                self._route_failed(op.src, op.dst, op.mode)
            elif type(op) is Eval:
                _answer(op, _FAILED)


def _route_at(batch: list[Op], index: int) -> Route:
    op = batch[index]
    assert type(op) is Route
    return op


def _answer(op: Eval, reply: Any) -> None:
    """Call ``op``'s callback with ``reply``, or its failure if ``reply`` is an error."""
    try:
        if isinstance(reply, Exception):
            if op.failed is not None:
                op.failed()
        elif op.done is not None:
            op.done(reply)
    except Exception:  # a bug in one callback must not stop the writer
        logger.exception("Cluster callback failed")
