"""One broker's side of the cluster: :class:`Cluster` (claims, routes, timers).

It owns the tasks of one instance: the writer (the outbox written to Redis in
batches, :mod:`.writer`), the subscriber (what other instances relay to our
clients, :mod:`.codec`) and the timers (refresh of our ids, expiry of the
queues).  Redis I/O goes through :mod:`.wire`; what it uses of the broker is
:class:`~.host.ClusterHost`.

When Redis is unreachable the broker keeps serving its own clients; a message
it cannot route gets EXPIRE back to its sender, whose payload says so
(:data:`~.writer.STORE_UNREACHABLE`: the destination may exist), a new
registration gets an ERROR, and ``GET <path>health`` says 503 until Redis is back.  After a Redis
restart the next refresh claims the instance's ids again (queued messages are
lost unless Redis persists them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, Final

from peerpy_protocol.messages import RelayType, ServerErrorMessage, serialize, serialize_relay
from redis.exceptions import RedisError

from ..core.host import Registration
from ..core.ice_access import UNREACHABLE, Registered
from ..core.realm import LIMIT_REACHED, Client, Link
from .batch import BatchCompiler
from .codec import entries, entry, source
from .host import ClusterHost
from .ops import Call, Eval, Mode
from .owners import OwnerCache
from .rooms import SWEEP_INSTANCES, RedisDirectory
from .scripts import Keys, Lua
from .wire import Wire
from .writer import Writer

__all__ = ["Cluster"]

logger: Final = logging.getLogger("peerpy_server.cluster")

UNAVAILABLE: Final = "Server is unavailable: its cluster store cannot be reached"
#: The ERROR a client gets when its registration was lost with the cluster store.
LOST: Final = "Server lost this registration: its cluster store was unreachable too long"
#: Seconds after Redis lost its data (a restart) during which no free id may be
#: claimed: every instance notices Redis is back within about RETRY + a tick
#: and claims its ids again first.
SETTLE: Final = 3.0
#: Most ids refreshed by one script call.
REFRESH_CHUNK: Final = 500
#: Most cached owners (see :class:`~.owners.OwnerCache`); past that the cache starts afresh.
OWNERS_LIMIT: Final = 100_000
#: Seconds ``/ice`` waits for Redis to say which token an id holds (then 503).
LOOKUP_WAIT: Final = 2.0
#: Seconds :meth:`Cluster.aclose` waits for the outbox (the last releases) to be written.
CLOSE_GRACE: Final = 2.0


class Cluster:
    """One broker's side of the cluster (see the module docstring).

    ``tick`` is the broker's timer period: the queues expire at that pace.
    """

    def __init__(self, broker: ClusterHost, url: str, *, tick: float) -> None:
        config = broker.config
        self._broker = broker
        self._tick = tick
        #: This instance's name in Redis.
        self.instance = secrets.token_hex(8)
        self._keys = keys = Keys(config.redis_prefix)
        self._wire = Wire(url, self._count)
        # The instance holding each id we routed to lately (from ROUTE results):
        # routes to them skip the Lua lookup (see .batch and _received).
        self._owners = OwnerCache(self.instance, OWNERS_LIMIT)
        compiler = BatchCompiler(
            keys, self.instance, config.max_queue_messages, config.max_queue_bytes
        )
        self._writer = Writer(broker, self._wire, compiler, self._owners, self._reached)
        self._ttl_ms = str(int(config.alive_timeout * 1000))
        self._tasks: list[asyncio.Task[None]] = []
        self._helpers: set[asyncio.Task[None]] = set()  # /peers, /ice answers, awaited on close
        self._reachable = False
        self._closing = False  # aclose has begun: the loops stop
        self._epoch = ""  # the epoch Redis had when we last saw it (see scripts.EPOCH)
        self._contact = 0.0  # broker.now() when Redis last answered
        #: The members of every room, in Redis (see :mod:`.rooms`).
        self.rooms = RedisDirectory(config, keys, self.instance, self._writer.push)

    def _count(self) -> None:
        self._broker.stats.redis_round_trips += 1

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the writer, subscriber and timer tasks (Redis may still be down).

        Returns once subscribed, or after 3 s if Redis is down (health then
        says 503).  Cancelling it leaves the tasks running: :meth:`aclose` stops them.
        """
        loop = asyncio.get_running_loop()
        subscribed = loop.create_future()
        self._contact = self._broker.now()

        def ready() -> None:
            # Subscribed (again): the connection was lost, maybe Redis with its data.
            self._reachable = False
            self._reached(True)
            if not subscribed.done():
                subscribed.set_result(None)

        channel = self._keys.channel(self.instance)
        for coro, name in (
            (self._writer.run(), "writer"),
            (self._wire.subscribe(channel, self._received_batch, ready), "subscriber"),
            (self._timer_loop(), "timers"),
        ):
            self._tasks.append(loop.create_task(coro, name=f"peerpy_server cluster {name}"))
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(subscribed), 3.0)
        logger.info("Cluster instance %s on Redis (%s)", self.instance, self.state)

    async def aclose(self) -> None:
        """Release this instance's ids, stop the tasks and close the Redis connections.

        Waits up to :data:`CLOSE_GRACE` for the outbox, then as long for the
        tasks.  Cancelling it may leave ids in Redis until ``alive_timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE
        # Write what is queued (the releases of the clients just closed) first.
        while self._writer.busy and self._reachable:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        pending = [(client.id, client.token) for client in self._broker.realm.clients()]
        # The loops also stop on _closing: on Python 3.11 asyncio.wait_for can
        # swallow a cancellation that comes as its operation completes.
        self._closing = self._wire.closing = self._writer.closing = True
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
            keys = self._keys
            calls: list[Call] = [
                Eval(Lua.RELEASE, keys.release(peer_id), [self.instance, token, peer_id])
                for peer_id, token in pending
            ]
            with contextlib.suppress(RedisError, OSError, TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._wire.execute(calls), 2.0)
        await self._wire.aclose()

    @property
    def state(self) -> str:
        """``"up"`` when Redis answers and our channel is subscribed, else ``"down"``.

        ``"stalled"`` while a batch has waited for Redis more than
        :data:`STALLED_AFTER` or the outbox holds over half its byte budget
        (Redis frozen or too slow: a backlog builds).
        """
        if not (self._reachable and self._wire.subscribed):
            return "down"
        if self._writer.stalled:
            return "stalled"
        return "up"

    @property
    def backlog(self) -> int:
        """Bytes held by the operations waiting for Redis (or being written)."""
        return self._writer.backlog

    # -- used by the connection and the realm --------------------------------

    def claim(self, link: Link, asked: Registration, done: Callable[[Client | None], None]) -> None:
        """Register ``asked.peer_id`` cluster-wide, then locally; ``done(client or None)`` after.

        The realm's own checks (params, key, token, id pattern) come first and
        refuse without asking Redis.
        """
        broker = self._broker
        realm = broker.realm
        key, peer_id, token = asked.key, asked.peer_id, asked.token
        if not realm.precheck(link, key=key, peer_id=peer_id, token=token):
            done(None)
            return

        def claimed(result: Any) -> None:
            if result[0] == "settling":  # Redis restarted: its owner may claim it again
                realm.refuse(link, serialize(ServerErrorMessage(UNAVAILABLE)), "cluster-settling")
                done(None)
                return
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
                self._writer.publish(self._keys.channel(previous), entry("s", peer_id, token))
            client = realm.connect(
                link, key=key, peer_id=peer_id, token=token, now=broker.now(), rooms=asked.rooms
            )
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
        self._writer.push(Eval(Lua.CLAIM, self._keys.claim(peer_id), args, claimed, failed))

    def release(self, peer_id: str, token: str) -> None:
        """Free ``peer_id`` in Redis if this instance still holds it with ``token``."""
        args = [self.instance, token, peer_id]
        self._writer.push(Eval(Lua.RELEASE, self._keys.release(peer_id), args))

    def route(self, client: Client, kind: RelayType, dst: str, frame: str) -> None:
        """Relay ``frame`` to ``dst``, which is not connected here (the realm's remote hook)."""
        notice = kind is RelayType.LEAVE or kind is RelayType.EXPIRE
        self._writer.route(client.id, dst, frame, Mode.NOTICE if notice else Mode.RELAY)

    def deliver(self, peer_id: str, frame: str) -> bool:
        """Send a room notice to ``peer_id``: here if it is local, else through Redis.

        ``True`` once sent or routed; a notice for an id nobody holds is dropped.
        """
        if not self._broker.realm.deliver_local(peer_id, frame):
            self._writer.route("", peer_id, frame, Mode.NOTICE)
        return True

    def respond_later(self, respond: Callable[[list[str]], None]) -> None:
        """Call ``respond(ids)`` with the ids registered in the whole cluster (``/peers``)."""

        async def answer() -> None:
            try:
                ids = list(await self._wire.run(Lua.PEERS, [self._keys.ids], []))
            except (RedisError, OSError):
                ids = self._broker.realm.ids()  # what this instance knows
            respond(ids)

        self._helper(answer())

    def registration(self, peer_id: str, answer: Callable[[Registered], None]) -> None:
        """Call ``answer`` with the token ``peer_id`` holds in the cluster (``/ice``).

        ``None`` if no instance holds it; :data:`~..core.ice_access.UNREACHABLE`
        if Redis did not answer within :data:`LOOKUP_WAIT` seconds.
        """
        key = self._keys.id(peer_id)

        async def look() -> None:
            try:
                value = await asyncio.wait_for(self._wire.get(key), LOOKUP_WAIT)
            except (RedisError, OSError, asyncio.TimeoutError):
                answer(UNREACHABLE)
                return
            # "<instance> <token>"
            answer(None if value is None else value.partition(" ")[2])

        self._helper(look())

    def _helper(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a helper task (an HTTP answer), cancelled by :meth:`aclose`."""
        task = asyncio.get_running_loop().create_task(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    # -- the subscriber ------------------------------------------------------------

    def _received_batch(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception:  # a bad batch must not cost the others
            logger.exception("Cluster batch not understood")
        self._broker.write_gathered()

    def _received(self, data: bytes) -> None:
        realm = self._broker.realm
        sender = ""
        stale: set[str] = set()
        for mode, dst, frame in entries(data):
            if mode == "f":
                sender = dst  # the instance that published this batch
            elif mode == "x":
                self._owners.forget(dst, frame)  # frame: the instance that does not hold dst
            elif mode == "s":
                realm.supersede(dst, frame)  # frame is the new token
            elif realm.deliver_local(dst, frame):
                pass
            elif mode == "r":
                # Its client left meanwhile: queue it like any message for an offline id.
                self._writer.route(source(frame), dst, frame, Mode.QUEUE)
            elif mode == "c" or mode == "m":
                # Sent on a cached owner that is no longer us: route it through
                # Redis (which knows the owner), and tell the sender to forget us.
                relay = Mode.RELAY if mode == "c" else Mode.NOTICE
                self._writer.route(source(frame), dst, frame, relay)
                if sender and dst not in stale:
                    stale.add(dst)
                    self._writer.publish(self._keys.channel(sender), entry("x", dst, self.instance))

    # -- the timers ----------------------------------------------------------------

    async def _timer_loop(self) -> None:
        """Refresh our ids every third of ``alive_timeout``; expire queues every tick."""
        broker = self._broker
        refresh_every = broker.config.alive_timeout / 3
        next_refresh = 0.0
        while not self._closing:
            now = broker.now()
            if not self._reachable and now - self._contact > broker.config.alive_timeout:
                # Cut off longer than alive_timeout: Redis has let our ids go.
                self._lose([client.id for client in broker.realm.clients()])
            if now >= next_refresh:
                next_refresh = now + refresh_every
                self._push_refresh()
            try:
                await self._expire()
            except (RedisError, OSError):
                self._reached(False)
            except Exception:  # a bug must not stop the timers
                logger.exception("Cluster sweep failed")
            await asyncio.sleep(self._tick)

    def _reached(self, reachable: bool) -> None:
        """Redis answered (or not).  Back after a loss: the epoch, then our ids again.

        The epoch (:data:`~.scripts.EPOCH`) tells whether Redis lost its data
        (it restarted empty); our claims are written before any claim this
        instance accepts later.
        """
        if reachable:
            self._contact = self._broker.now()
            if not self._reachable:
                self._reachable = True
                args = [secrets.token_hex(8), self._epoch, str(int(SETTLE * 1000))]
                self._writer.push(Eval(Lua.EPOCH, self._keys.epoch(), args, self._saw_epoch))
                self._push_refresh()
        else:
            self._reachable = False

    def _saw_epoch(self, epoch: Any) -> None:
        self._epoch = str(epoch)

    def _lose(self, peer_ids: list[str]) -> None:
        """Our registrations of ``peer_ids`` are lost: ERROR, then close them."""
        realm = self._broker.realm
        frame = serialize(ServerErrorMessage(LOST))
        for peer_id in peer_ids:
            if realm.deliver_local(peer_id, frame):
                realm.supersede(peer_id, None)
        self._broker.write_gathered()

    def _push_refresh(self) -> None:
        self._writer.push(self.rooms.alive())
        clients = list(self._broker.realm.clients())
        for start in range(0, len(clients), REFRESH_CHUNK):
            chunk = clients[start : start + REFRESH_CHUNK]
            ids = [client.id for client in chunk]
            args = [self.instance, self._ttl_ms, *(client.token for client in chunk), *ids]

            def refreshed(lost: Any, chunk: list[Client] = chunk) -> None:
                self._lose([chunk[int(index) - 1].id for index in lost])

            self._writer.push(Eval(Lua.REFRESH, self._keys.refresh(ids), args, refreshed))

    async def _expire(self) -> None:
        broker = self._broker
        config = broker.config
        args = [str(int(config.expire_timeout * 1000)), "1000", self._keys.prefix]
        result = await self._wire.run(Lua.SWEEP, [self._keys.expiry], args)
        self._reached(True)
        swept = await self._wire.run(
            Lua.ROOM_SWEEP, self._keys.room_sweep, [self._keys.prefix, str(SWEEP_INSTANCES)]
        )
        self.rooms.swept(swept)
        for index in range(0, len(result), 2):
            dst, senders = result[index], result[index + 1]
            for src in senders:
                frame = serialize_relay(RelayType.EXPIRE, dst, src)
                broker.stats.expired += 1
                if not broker.realm.deliver_local(src, frame):
                    self._writer.route(dst, src, frame, Mode.NOTICE)
        broker.write_gathered()
