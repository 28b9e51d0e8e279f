"""Cluster mode: brokers sharing one realm through Redis (``--redis URL``).

Each broker process (an *instance*, named by a random hex string) keeps its
own clients in its in-memory :class:`~peerpy_server.realm.Realm`, as without
Redis; Redis holds what must be shared, under ``redis_prefix``:

* ``id:<id>`` = ``"<instance> <token>"``, with a time to live of
  ``alive_timeout``, refreshed by its instance every third of it: the
  cluster-wide registry.  A claim (:data:`CLAIM`) is atomic: a free id or the
  same token wins (a same-token takeover works across instances; the previous
  instance is told to close its socket), another token gets ``ID-TAKEN``.  An
  instance that dies stops refreshing, so its ids are free again within
  ``alive_timeout``.
* ``q:<id>``, ``qs:<id>``, ``qb:<id>`` and the sorted set ``expiry``: the
  offline queues (frames, senders, bytes, creation time from Redis' clock),
  bounded by ``max_queue_messages`` and ``max_queue_bytes`` per id.  Expiry
  (:data:`SWEEP`) pops due queues atomically, whichever instance runs it, so
  each sender gets exactly one EXPIRE per destination.
* the channel ``inst:<instance>``: messages relayed to a client that instance
  holds.  :data:`ROUTE` handles a run of messages in one call: it publishes
  them to their owners (one PUBLISH per instance), or queues them when the id
  has no owner or its owner is gone (no subscriber).

The owner cache: ROUTE returns the instance each message was published to,
and the writer remembers it per id (at most :data:`OWNERS_LIMIT`).  Messages
to a cached id skip the Lua lookup: one plain PUBLISH per instance and batch
(on a dedicated connection of redis-py's lower layer, see
:meth:`Cluster._pipeline`), entries marked ``c`` (relay or queue) or ``m``
(relay or drop).  The cache may be stale, never wrong in effect: an instance that gets
an entry for an id it does not hold (the id moved or left) routes it again
through ROUTE, which knows the owner or queues it, and tells the sender's
instance to forget it (entry ``x``); a PUBLISH nobody receives (the instance
is gone) makes the writer forget that instance and send those messages
through ROUTE.  A message forwarded that way can arrive after a later one
that went straight to the new owner: only while an id moves between
instances, a window of about one Redis round trip.

Every operation of one instance goes through one ordered outbox, written to
Redis in pipelines by one task: a relay, a claim and a release are applied in
the order the broker saw them (a client that leaves and comes back with
another token is not refused by its own stale claim), and messages from one
sender keep their order.  When Redis is unreachable the broker keeps serving
its own clients; a message it cannot route gets EXPIRE back to its sender, a
new registration gets an ERROR, and ``GET <path>health`` says 503 until Redis
is back.  After a Redis restart the next refresh claims the instance's ids
again (queued messages are lost unless Redis persists them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as aioredis
from peerpy_protocol.messages import RelayType, ServerErrorMessage, serialize, serialize_relay
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, RedisError

from .core.realm import LIMIT_REACHED, Client, Link

if sys.version_info >= (3, 11, 3):  # as redis-py does: asyncio's has a bug before
    from asyncio import timeout as async_timeout  # type: ignore[attr-defined,unused-ignore]
else:  # redis-py's dependency there
    from async_timeout import timeout as async_timeout  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["CLAIM", "ROUTE", "SWEEP", "Cluster"]

logger: Final = logging.getLogger("peerpy_server.cluster")

UNAVAILABLE: Final = "Server is unavailable: its cluster store cannot be reached"
#: Most operations written to Redis in one pipeline.
BATCH: Final = 1000
#: Most ids refreshed by one script call.
REFRESH_CHUNK: Final = 500
#: Seconds between two attempts to reach Redis again.
RETRY: Final = 0.5
#: Most operations waiting for Redis; past that (Redis slow or unreachable) a
#: new one fails at once: its sender gets EXPIRE, a registration an ERROR.
OUTBOX_LIMIT: Final = 100_000
#: Seconds to connect to Redis, and to wait for an answer.
CONNECT_TIMEOUT: Final = 2.0
SOCKET_TIMEOUT: Final = 5.0
#: Most cached owners (see :meth:`Cluster._learn`); past that the cache starts afresh.
OWNERS_LIMIT: Final = 100_000
#: Seconds :meth:`Cluster.aclose` waits for the outbox (the last releases) to be written.
CLOSE_GRACE: Final = 2.0

#: KEYS: id, q, qs, qb, expiry, ids; ARGV: instance, token, ttl ms, id, limit.
#: Returns {"taken"}, {"full"} or {"ok", previous instance or "", queued frames}.
CLAIM: Final = """
local cur = redis.call('GET', KEYS[1])
local prev = ''
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if cur then
  local sp = string.find(cur, ' ', 1, true)
  if string.sub(cur, sp + 1) ~= ARGV[2] then return {'taken'} end
  prev = string.sub(cur, 1, sp - 1)
else
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[5]) then return {'full'} end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[6], now + tonumber(ARGV[3]), ARGV[4])
local frames = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[4])
return {'ok', prev, frames}
"""

#: KEYS: id, ids; ARGV: instance, token, id.  Deletes the id if it is still ours.
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  redis.call('ZREM', KEYS[2], ARGV[3])
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: KEYS: ids.  The registered ids (entries past their time to live dropped).
PEERS: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

#: KEYS: the ids set, then id keys; ARGV: instance, ttl ms, then one token
#: per id, then the ids.  Extends our ids, claims again those that vanished
#: (Redis restart); returns the indexes (1-based) of ids held by someone else.
REFRESH: Final = """
local lost = {}
local mine = ARGV[1] .. ' '
local n = #KEYS - 1
local t = redis.call('TIME')
local until_ = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])
for i = 1, n do
  local key = KEYS[i + 1]
  local value = mine .. ARGV[i + 2]
  local cur = redis.call('GET', key)
  if cur == value or not cur then
    redis.call('SET', key, value, 'PX', ARGV[2])
    redis.call('ZADD', KEYS[1], until_, ARGV[i + 2 + n])
  else
    table.insert(lost, i)
  end
end
return lost
"""

#: KEYS: expiry; ARGV: key prefix, channel prefix, max messages, max bytes,
#: count, then dst, frame, src, mode for each message.  mode "r": relay,
#: queue if offline; "n": relay, drop if offline (LEAVE, EXPIRE); "q": queue
#: only.  The messages for one instance go out as one PUBLISH of entries
#: ``<mode><len>:<dst><len>:<frame>`` (lengths in bytes); those for a dead
#: instance (no subscriber) are queued.  Returns one result per message: the
#: owner instance (published to it), 2 queued, 3 queue full (sender
#: recorded), 0 dropped.
ROUTE: Final = """
local p, chan = ARGV[1], ARGV[2]
local maxm, maxb = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local results, groups, order = {}, {}, {}
local now = nil
local function enqueue(i, dst, frame, src)
  local q, qs, qb = p .. 'q:' .. dst, p .. 'qs:' .. dst, p .. 'qb:' .. dst
  if redis.call('EXISTS', qs) == 0 then
    if not now then
      local t = redis.call('TIME')
      now = t[1] * 1000 + math.floor(t[2] / 1000)
    end
    redis.call('ZADD', KEYS[1], 'NX', now, dst)
  end
  redis.call('SADD', qs, src)
  local size = tonumber(redis.call('GET', qb) or '0')
  if redis.call('LLEN', q) < maxm and size + #frame <= maxb then
    redis.call('RPUSH', q, frame)
    redis.call('INCRBY', qb, #frame)
    results[i] = 2
  else
    results[i] = 3
  end
end
for i = 1, n do
  local b = 5 + (i - 1) * 4
  local dst, frame, src, mode = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  results[i] = 0
  local owner = nil
  if mode ~= 'q' then
    local cur = redis.call('GET', p .. 'id:' .. dst)
    if cur then owner = string.sub(cur, 1, string.find(cur, ' ', 1, true) - 1) end
  end
  if owner then
    local g = groups[owner]
    if not g then
      g = {entries = {}, idx = {}}
      groups[owner] = g
      table.insert(order, owner)
    end
    table.insert(g.entries, mode .. #dst .. ':' .. dst .. #frame .. ':' .. frame)
    table.insert(g.idx, i)
    results[i] = owner
  elseif mode ~= 'n' then
    enqueue(i, dst, frame, src)
  end
end
for _, owner in ipairs(order) do
  local g = groups[owner]
  if redis.call('PUBLISH', chan .. owner, table.concat(g.entries)) == 0 then
    for _, i in ipairs(g.idx) do
      local b = 5 + (i - 1) * 4
      if ARGV[b + 4] == 'r' then
        enqueue(i, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3])
      else
        results[i] = 0
      end
    end
  end
end
return results
"""

#: KEYS: expiry; ARGV: expire ms, limit, key prefix.  Pops the queues older
#: than expire ms (Redis' clock); returns {dst, {senders}, dst, {senders}, ...}.
SWEEP: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
                       'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, dst in ipairs(due) do
  local p = ARGV[3]
  table.insert(out, dst)
  table.insert(out, redis.call('SMEMBERS', p .. 'qs:' .. dst))
  redis.call('DEL', p .. 'q:' .. dst, p .. 'qs:' .. dst, p .. 'qb:' .. dst)
  redis.call('ZREM', KEYS[1], dst)
end
return out
"""

_Callback = Callable[[Any], None]
_Failure = Callable[[], None]
#: One outbox operation: (script, keys, args, on result, on failure); a route is
#: (_ROUTE, dst, frame, src, mode), a raw publish (_PUBLISH, channel, payload, None, None).
_Op = tuple[Any, Any, Any, Any, Any]
#: One Redis call of a batch: (script, _PUBLISH or _DIRECT; keys; args; indexes
#: in the batch of the operations it carries).
_Call = tuple[Any, list[str], list[Any], list[int]]


class Cluster:
    """One broker's side of the cluster (see the module docstring)."""

    def __init__(self, broker: Broker, url: str) -> None:
        config = broker.config
        self._broker = broker
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
        }
        self._redis = aioredis.from_url(url, decode_responses=True, **options)
        # The hot path (direct publishes, our subscription) on dedicated
        # connections of redis-py's lower layer: no pipeline or PubSub object
        # (about 180 and 75 µs of CPU each per use), no pool.  RESP2, bytes:
        # relayed batches are parsed by byte lengths.  This pool is only their
        # factory (URL, TLS, AUTH, db as the URL says); it never hands out one.
        self._factory = aioredis.ConnectionPool.from_url(url, protocol=2, **options)
        self._wire: AbstractConnection | None = None
        self._prefix = config.redis_prefix
        self._channels = self._prefix + "inst:"
        #: This instance's name in Redis.
        self.instance = secrets.token_hex(8)
        self._ttl_ms = str(int(config.alive_timeout * 1000))
        self._claim = self._redis.register_script(CLAIM)
        self._release = self._redis.register_script(RELEASE)
        self._refresh = self._redis.register_script(REFRESH)
        self._route = self._redis.register_script(ROUTE)
        self._sweep = self._redis.register_script(SWEEP)
        self._peers = self._redis.register_script(PEERS)
        self._ids = self._prefix + "ids"
        # Ordered operations (see _Op).
        self._outbox: list[_Op] = []
        # The instance holding each id we routed to lately (from ROUTE results):
        # routes to them skip the Lua lookup (see _run_calls and _received).
        self._owners: dict[str, str] = {}
        self._header = _entry("f", self.instance, "")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._helpers: set[asyncio.Task[None]] = set()  # /peers answers, awaited on close
        self._subscribed = False
        self._reachable = False
        self._writing = False  # the writer holds a batch not yet answered
        self._closing = False  # aclose has begun: the loops stop
        self._expired: set[tuple[str, str]] = set()  # EXPIREs sent for the failed batch

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the writer, subscriber and timer tasks (Redis may still be down)."""
        loop = asyncio.get_running_loop()
        subscribed = loop.create_future()
        for coro, name in (
            (self._write_loop(), "writer"),
            (self._subscribe_loop(subscribed), "subscriber"),
            (self._timer_loop(), "timers"),
        ):
            self._tasks.append(loop.create_task(coro, name=f"peerpy_server cluster {name}"))
        # Serve once subscribed, or after a short wait if Redis is down (health says 503).
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(subscribed), 3.0)
        logger.info("Cluster instance %s on Redis (%s)", self.instance, self.state)

    async def aclose(self) -> None:
        """Release this instance's ids, stop the tasks and close the Redis client."""
        # Write what is queued (the releases of the clients just closed) first.
        deadline = asyncio.get_running_loop().time() + CLOSE_GRACE
        while (self._outbox or self._writing) and self._reachable:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        realm = self._broker.realm
        pending = [(client.id, client.token) for client in realm.clients()]
        # The loops also stop on _closing: on Python 3.11 asyncio.wait_for can
        # swallow a cancellation that comes as its operation completes.
        self._closing = True
        tasks = [*self._tasks, *self._helpers]
        for _ in range(2):
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CLOSE_GRACE)
            tasks = [task for task in tasks if not task.done()]
        for task in [*self._tasks, *self._helpers]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error("Cluster task failed", exc_info=task.exception())
        if pending and self._reachable:
            with contextlib.suppress(RedisError, OSError, TimeoutError, asyncio.TimeoutError):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for peer_id, token in pending:
                        keys = [self._prefix + "id:" + peer_id, self._ids]
                        args = [self.instance, token, peer_id]
                        await self._release(keys=keys, args=args, client=pipe)
                    await asyncio.wait_for(pipe.execute(), 2.0)
        if self._wire is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._wire.disconnect(nowait=True)
        await self._redis.aclose()

    @property
    def state(self) -> str:
        """``"up"`` when Redis answers and our channel is subscribed, else ``"down"``."""
        return "up" if self._reachable and self._subscribed else "down"

    # -- used by the connection and the realm --------------------------------

    def claim(
        self,
        link: Link,
        *,
        key: str,
        peer_id: str,
        token: str,
        done: Callable[[Client | None], None],
    ) -> None:
        """Register ``peer_id`` cluster-wide, then locally; ``done(client or None)`` after.

        The realm's own checks (params, key, token, id pattern) come first and
        refuse without asking Redis.
        """
        broker = self._broker
        realm = broker.realm
        if not realm.precheck(link, key=key, peer_id=peer_id, token=token):
            done(None)
            return
        keys = [*self._queue_keys(peer_id), self._ids]

        def claimed(result: Any) -> None:
            if result[0] == "full":
                realm.refuse(link, serialize(ServerErrorMessage(LIMIT_REACHED)), "limit-reached")
                done(None)
                return
            if result[0] != "ok":
                realm.refuse_taken(link)
                done(None)
                return
            previous, frames = result[1], result[2]
            if previous and previous != self.instance:
                # The id moves here: its old socket elsewhere is closed.
                self._publish(previous, _entry("s", peer_id, token))
            client = realm.connect(link, key=key, peer_id=peer_id, token=token, now=broker.now())
            done(client)
            if client is None:
                self.release(peer_id, token)
                return
            for frame in frames:
                if not link.send(frame):
                    break
            broker.write_gathered()

        def failed() -> None:
            realm.refuse(link, serialize(ServerErrorMessage(UNAVAILABLE)), "cluster-unavailable")
            done(None)
            broker.write_gathered()

        limit = str(broker.config.concurrent_limit)
        args = [self.instance, token, self._ttl_ms, peer_id, limit]
        self._push(self._claim, keys, args, claimed, failed)

    def release(self, peer_id: str, token: str) -> None:
        """Free ``peer_id`` in Redis if this instance still holds it with ``token``."""
        keys = [self._prefix + "id:" + peer_id, self._ids]
        self._push(self._release, keys, [self.instance, token, peer_id])

    def route(self, client: Client, kind: RelayType, dst: str, frame: str) -> None:
        """Relay ``frame`` to ``dst``, which is not connected here (the realm's remote hook)."""
        mode = "n" if kind is RelayType.LEAVE or kind is RelayType.EXPIRE else "r"
        outbox = self._outbox
        if len(outbox) >= OUTBOX_LIMIT:
            self._broker.stats.refuse("cluster-backlog")
            self._route_failed(client.id, dst, mode)
            return
        # Consecutive routes are merged by the writer (see _calls).
        outbox.append((_ROUTE, dst, frame, client.id, mode))
        self._wake.set()

    def _route_frame(self, src: str, dst: str, frame: str, mode: str) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._broker.stats.refuse("cluster-backlog")
            self._route_failed(src, dst, mode)
            return
        self._outbox.append((_ROUTE, dst, frame, src, mode))
        self._wake.set()

    def _route_failed(self, src: str, dst: str, mode: str) -> None:
        # Never a silent loss: the sender hears EXPIRE for what was not routed
        # (once per destination in a failed batch).
        if mode != "n" and (src, dst) not in self._expired:
            self._expired.add((src, dst))
            self._broker.stats.expired += 1
            self._broker.realm.deliver_local(src, serialize_relay(RelayType.EXPIRE, dst, src))

    def respond_later(self, respond: Callable[[list[str]], None]) -> None:
        """Call ``respond(ids)`` with the ids registered in the whole cluster (``/peers``)."""

        async def answer() -> None:
            try:
                ids = list(await self._peers(keys=[self._ids]))
                self._broker.stats.redis_round_trips += 1
            except (RedisError, OSError):
                ids = self._broker.realm.ids()  # what this instance knows
            respond(ids)

        task = asyncio.get_running_loop().create_task(answer())
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    # -- internals ---------------------------------------------------------------

    def _queue_keys(self, peer_id: str) -> list[str]:
        p = self._prefix
        return [p + "id:" + peer_id, p + "q:" + peer_id, p + "qs:" + peer_id, p + "qb:" + peer_id,
                p + "expiry"]  # fmt: skip

    def _publish(self, instance: str, payload: bytes) -> None:
        self._outbox.append((_PUBLISH, self._channels + instance, payload, None, None))
        self._wake.set()

    def _push(
        self,
        script: Any,
        keys: list[str],
        args: list[str],
        callback: _Callback | None = None,
        failure: _Failure | None = None,
    ) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._broker.stats.refuse("cluster-backlog")
            if failure is not None:
                failure()
            return
        self._outbox.append((script, keys, args, callback, failure))
        self._wake.set()

    def _forget(self, peer_id: str, owner: str) -> None:
        """Drop the cached owner of ``peer_id`` if it is still ``owner``."""
        if self._owners.get(peer_id) == owner:
            del self._owners[peer_id]

    def _learn(self, peer_id: str, owner: str) -> None:
        """Cache ``owner`` (a ROUTE result) as the instance holding ``peer_id``."""
        owners = self._owners
        if owner != self.instance and owners.get(peer_id) != owner:
            if len(owners) >= OWNERS_LIMIT:
                owners.clear()
            owners[peer_id] = owner

    async def _write_loop(self) -> None:
        """Write the outbox to Redis in order, one pipeline per batch."""
        broker = self._broker
        while not self._closing:
            await self._wake.wait()
            await asyncio.sleep(0)  # let the reads already due add to this batch
            self._wake.clear()
            while self._outbox:
                batch = self._outbox[:BATCH]
                del self._outbox[:BATCH]
                self._writing = True
                try:
                    problem = await self._write(batch)
                except (RedisError, OSError) as exc:
                    problem = exc
                    self._failed(batch)
                finally:
                    self._writing = False
                    self._expired.clear()
                self._reachable = problem is None
                if problem is not None:
                    broker.warnings.warning(
                        logger, "redis", broker.now(), "Redis unreachable: %s", problem
                    )
                broker.write_gathered()
                if not self._reachable:
                    await asyncio.sleep(RETRY)

    async def _write(self, batch: list[_Op]) -> Exception | None:
        """One batch: one pipeline, then one ROUTE for the direct publishes nobody took.

        Each operation's callback (or, for an operation Redis could not run,
        its failure) is called once; if the pipeline fails, this raises before
        any is called; if only that second ROUTE fails, its routes fail (their
        senders get EXPIRE) and the error is returned.
        """
        calls = self._calls(batch)
        replies = await self._execute(calls)
        again: list[int] = []  # routes published to an owner that is gone
        for (script, keys, _, indexes), reply in zip(calls, replies, strict=True):
            if script is _PUBLISH:
                continue
            if script is _DIRECT:
                if reply == 0:  # no subscriber: that instance is gone
                    self._drop_owner(keys[0][len(self._channels) :])
                    again += indexes
                elif isinstance(reply, Exception):
                    self._routed(batch, indexes, reply)
                continue
            if script is self._route:
                self._routed(batch, indexes, reply)
                continue
            self._answer(batch[indexes[0]], reply)
        if again:
            # Through ROUTE now: it queues for the ids whose instance is gone.
            again.sort()
            try:
                (reply,) = await self._execute([self._route_call(batch, again)])
            except (RedisError, OSError) as exc:
                self._routed(batch, again, exc)
                return exc
            self._routed(batch, again, reply)
        return None

    def _routed(self, batch: list[_Op], indexes: list[int], reply: Any) -> None:
        """Handle a ROUTE reply: cache the owners it names; EXPIRE if it failed."""
        if isinstance(reply, Exception):
            for index in indexes:
                _, dst, _, src, mode = batch[index]
                self._route_failed(src, dst, mode)
            return
        for index, result in zip(indexes, reply, strict=True):
            if isinstance(result, str):
                self._learn(batch[index][1], result)

    def _drop_owner(self, gone: str) -> None:
        """Forget every cached id of the instance ``gone``."""
        owners = self._owners
        for peer_id in [peer_id for peer_id, owner in owners.items() if owner == gone]:
            del owners[peer_id]

    def _answer(self, op: _Op, reply: Any) -> None:
        _, _, _, callback, failure = op
        try:
            if isinstance(reply, Exception):
                if failure is not None:
                    failure()
            elif callback is not None:
                callback(reply)
        except Exception:  # a bug in one callback must not stop the writer
            logger.exception("Cluster callback failed")

    def _failed(self, batch: list[_Op]) -> None:
        """Redis could not take ``batch``: every failure callback, every sender's EXPIRE."""
        for op in batch:
            if op[0] is _ROUTE:
                _, dst, _, src, mode = op
                self._route_failed(src, dst, mode)
            elif op[0] is not _PUBLISH:
                self._answer(op, _FAILED)

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        """Send ``calls`` in one pipeline (scripts by SHA: no SCRIPT EXISTS per batch).

        Calls whose script Redis lost (it restarted) are sent again once the
        scripts are loaded.
        """
        replies = await self._pipeline(calls)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            for script in (self._claim, self._release, self._refresh, self._route):
                await self._redis.script_load(script.script)
            again = await self._pipeline([calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        """One round trip: direct publishes on our connection, the rest in one pipeline.

        The direct publishes are written first in one send, their replies
        read after the pipeline's.  A failure of that connection (or Redis
        silent for ``SOCKET_TIMEOUT``: redis-py then cuts it) fails only the
        direct publishes (their replies are the exception); a failure of the
        pipeline raises.
        """
        replies: list[Any] = [None] * len(calls)
        direct = [index for index, call in enumerate(calls) if call[0] is _DIRECT]
        wire: AbstractConnection | None = None
        if direct:
            try:
                wire = self._wire
                if wire is None:
                    # No socket_timeout: redis-py would run each send in a
                    # task (asyncio.wait_for); one timeout context instead.
                    factory = self._factory
                    wire = factory.connection_class(
                        **{**factory.connection_kwargs, "socket_timeout": None}
                    )
                    self._wire = wire
                commands = [(b"PUBLISH", calls[i][1][0], calls[i][2][0]) for i in direct]
                async with async_timeout(SOCKET_TIMEOUT):
                    await wire.send_packed_command(wire.pack_commands(commands), check_health=False)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                wire = None
                await self._wire_failed(direct, replies, exc)
        rest = [i for i, call in enumerate(calls) if call[0] is not _DIRECT]
        if rest:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for index in rest:
                        script, keys, args, _ = calls[index]
                        if script is _PUBLISH:
                            pipe.publish(keys[0], args[0])
                        else:
                            pipe.evalsha(script.sha, len(keys), *keys, *args)
                    answers: list[Any] = await pipe.execute(raise_on_error=False)
            except BaseException:
                if wire is not None:  # its replies will not be read: out of step
                    self._wire = None
                    await wire.disconnect(nowait=True)
                raise
            for index, answer in zip(rest, answers, strict=True):
                replies[index] = answer
        if wire is not None:
            try:
                # Replies come in order.  Redis silent that long: the read is
                # cancelled, and redis-py then cuts the connection.  (Its
                # read_response(timeout=...) would not: it returns None.)
                async with async_timeout(SOCKET_TIMEOUT):
                    for index in direct:
                        replies[index] = await wire.read_response()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                await self._wire_failed(direct, replies, exc)
        self._broker.stats.redis_round_trips += 1
        return replies

    async def _wire_failed(self, direct: list[int], replies: list[Any], exc: BaseException) -> None:
        """Our publishing connection failed: drop it, fail the publishes not answered."""
        for index in direct:
            if replies[index] is None:
                replies[index] = exc
        wire, self._wire = self._wire, None
        if wire is not None:
            # redis-py already disconnected it for a socket error or timeout;
            # a reply error (never for PUBLISH) leaves it out of step: close it.
            with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
                await wire.disconnect(nowait=True)

    def _calls(self, batch: list[_Op]) -> list[_Call]:
        """The Redis calls for ``batch``, each with the indexes of the operations it covers.

        Each run of routes becomes one PUBLISH per instance for the ids whose
        instance is cached (:meth:`_direct`), and one ROUTE call for the others.
        """
        calls: list[_Call] = []
        run: list[int] = []
        for index, op in enumerate(batch):
            kind = op[0]
            if kind is _ROUTE:
                run.append(index)
                continue
            if run:
                self._run_calls(batch, run, calls)
                run = []
            if kind is _PUBLISH:
                calls.append((_PUBLISH, [op[1]], [op[2]], []))
            else:
                calls.append((kind, op[1], op[2], [index]))
        if run:
            self._run_calls(batch, run, calls)
        return calls

    def _run_calls(self, batch: list[_Op], run: list[int], calls: list[_Call]) -> None:
        owners = self._owners
        groups: dict[str, list[int]] = {}
        lookup: list[int] = []
        for index in run:
            op = batch[index]
            owner = owners.get(op[1]) if op[4] != "q" else None
            if owner is None:
                lookup.append(index)
            else:
                groups.setdefault(owner, []).append(index)
        for owner, indexes in groups.items():
            # Entries "c" (relay or queue) and "m" (relay or drop): the
            # receiver checks that it holds the id, and routes again if not.
            parts = [self._header]
            for index in indexes:
                _, dst, frame, _, mode = batch[index]
                parts.append(_entry("c" if mode == "r" else "m", dst, frame))
            calls.append((_DIRECT, [self._channels + owner], [b"".join(parts)], indexes))
        if lookup:
            calls.append(self._route_call(batch, lookup))

    def _route_call(self, batch: list[_Op], indexes: list[int]) -> _Call:
        config = self._broker.config
        args = [self._prefix, self._channels, str(config.max_queue_messages),
                str(config.max_queue_bytes), str(len(indexes))]  # fmt: skip
        for index in indexes:
            _, dst, frame, src, mode = batch[index]
            args += (dst, frame, src, mode)
        return (self._route, [self._prefix + "expiry"], args, indexes)

    async def _subscribe_loop(self, subscribed: asyncio.Future[None]) -> None:
        """Receive what other instances relay to our clients; reconnect when Redis goes."""
        channel = self._channels + self.instance
        while not self._closing:
            await self._subscribe_once(channel, subscribed)
            await asyncio.sleep(RETRY)

    async def _subscribe_once(self, channel: str, subscribed: asyncio.Future[None]) -> None:
        """One subscription on a dedicated connection, until that connection is lost.

        No read timeout (a quiet channel is normal): a lost Redis shows as the
        connection closing.
        """
        factory = self._factory
        kwargs = {**factory.connection_kwargs, "socket_timeout": None}
        wire: AbstractConnection = factory.connection_class(**kwargs)
        broker = self._broker
        try:
            # Connects first (socket_connect_timeout), authenticates, selects the db.
            await wire.send_packed_command(
                wire.pack_command(b"SUBSCRIBE", channel), check_health=False
            )
            reply = await asyncio.wait_for(wire.read_response(), SOCKET_TIMEOUT)
            if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                raise RedisError(f"unexpected SUBSCRIBE reply {reply!r}")
            self._subscribed = self._reachable = True
            if not subscribed.done():
                subscribed.set_result(None)
            while not self._closing:
                push = await wire.read_response()
                if type(push) is list and len(push) == 3 and push[0] == b"message":
                    try:
                        self._received(push[2])
                    except Exception:  # a bad batch must not cost the others
                        logger.exception("Cluster batch not understood")
                    broker.write_gathered()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            if self._subscribed:
                logger.warning("Lost the Redis subscription (%s); retrying", exc)
        finally:
            self._subscribed = False
            with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
                await wire.disconnect(nowait=True)

    def _received(self, data: bytes) -> None:
        realm = self._broker.realm
        sender = ""
        stale: set[str] = set()
        for mode, dst, frame in _entries(data):
            if mode == "f":
                sender = dst  # the instance that published this batch
            elif mode == "x":
                self._forget(dst, frame)  # frame: the instance that does not hold dst
            elif mode == "s":
                realm.supersede(dst, frame)  # frame is the new token
            elif realm.deliver_local(dst, frame):
                pass
            elif mode == "r":
                # Its client left meanwhile: queue it like any message for an offline id.
                self._route_frame(_source(frame), dst, frame, "q")
            elif mode == "c" or mode == "m":
                # Sent on a cached owner that is no longer us: route it through
                # Redis (which knows the owner), and tell the sender to forget us.
                self._route_frame(_source(frame), dst, frame, "r" if mode == "c" else "n")
                if sender and dst not in stale:
                    stale.add(dst)
                    self._publish(sender, _entry("x", dst, self.instance))

    async def _timer_loop(self) -> None:
        """Refresh our ids every third of ``alive_timeout``; expire queues every tick."""
        broker = self._broker
        config = broker.config
        from .broker import TICK

        refresh_every = config.alive_timeout / 3
        next_refresh = 0.0
        while not self._closing:
            now = broker.now()
            if now >= next_refresh:
                next_refresh = now + refresh_every
                self._push_refresh()
            try:
                await self._expire()
            except (RedisError, OSError):
                self._reachable = False
            except Exception:  # a bug must not stop the timers
                logger.exception("Cluster sweep failed")
            await asyncio.sleep(TICK)

    def _push_refresh(self) -> None:
        clients = list(self._broker.realm.clients())
        for start in range(0, len(clients), REFRESH_CHUNK):
            chunk = clients[start : start + REFRESH_CHUNK]
            keys = [self._ids, *(self._prefix + "id:" + client.id for client in chunk)]
            args = [self.instance, self._ttl_ms, *(client.token for client in chunk)]
            args += [client.id for client in chunk]

            def refreshed(lost: Any, chunk: list[Client] = chunk) -> None:
                for index in lost:
                    client = chunk[int(index) - 1]
                    self._broker.realm.supersede(client.id, None)

            self._push(self._refresh, keys, args, refreshed)

    async def _expire(self) -> None:
        broker = self._broker
        config = broker.config
        args = [str(int(config.expire_timeout * 1000)), "1000", self._prefix]
        result = await self._sweep(keys=[self._prefix + "expiry"], args=args)
        broker.stats.redis_round_trips += 1
        self._reachable = True
        for index in range(0, len(result), 2):
            dst, senders = result[index], result[index + 1]
            for src in senders:
                frame = serialize_relay(RelayType.EXPIRE, dst, src)
                broker.stats.expired += 1
                if not broker.realm.deliver_local(src, frame):
                    self._route_frame(dst, src, frame, "n")
        broker.write_gathered()


#: Marks a route in the outbox (merged into ROUTE calls by the writer).
_ROUTE: Final = object()
#: Marks a raw PUBLISH in the outbox and in a batch's calls.
_PUBLISH: Final = object()
#: Marks, in a batch's calls, the PUBLISH of routes to a cached owner.
_DIRECT: Final = object()
#: The result given to the operations of a batch Redis did not take.
_FAILED: Final = ConnectionError("Redis unreachable")


def _entry(mode: str, dst: str, frame: str) -> bytes:
    """One entry of a relayed batch (what ROUTE builds in Lua)."""
    dst_bytes, frame_bytes = dst.encode(), frame.encode()
    return b"%s%d:%s%d:%s" % (
        mode.encode(),
        len(dst_bytes),
        dst_bytes,
        len(frame_bytes),
        frame_bytes,
    )


def _entries(data: bytes) -> list[tuple[str, str, str]]:
    """Split a relayed batch into ``(mode, dst, frame)`` (see :data:`ROUTE`)."""
    out = []
    pos, size = 0, len(data)
    while pos < size:
        mode = chr(data[pos])
        colon = data.index(b":", pos + 1)
        end = colon + 1 + int(data[pos + 1 : colon])
        dst = data[colon + 1 : end].decode()
        colon = data.index(b":", end)
        pos = colon + 1 + int(data[end:colon])
        out.append((mode, dst, data[colon + 1 : pos].decode()))
    return out


def _source(frame: str) -> str:
    """The ``src`` of a relayed frame (the broker wrote it; ``""`` if absent)."""
    try:
        value = json.loads(frame).get("src", "")
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""
