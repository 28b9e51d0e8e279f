"""The cluster's Redis wire: pipelines, script reloads, the direct publisher, the subscription.

:class:`Wire` owns every connection one instance holds to Redis:

* a redis-py client (its own pool) for pipelines and single script calls;
* the *publisher*, a dedicated connection of redis-py's lower layer for the
  direct publishes to cached owners (no pipeline object: about 180 µs of CPU
  each), opened on first use and dropped when it fails or Redis is silent for
  :data:`SOCKET_TIMEOUT`;
* the *subscription*, another dedicated connection reading our channel
  (no PubSub object: about 75 µs each), opened again after :data:`RETRY`
  when lost.

Scripts go by SHA (no SCRIPT EXISTS per batch); calls whose script Redis lost
(it restarted empty) are sent again once the scripts are loaded.  What to send
and what the replies mean is the instance's (:mod:`.instance`); this module
only moves typed calls (:mod:`.ops`) and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, RedisError

from .ops import Call, Direct, Eval, Publish, RouteCall
from .scripts import Lua

if sys.version_info >= (3, 11, 3):  # as redis-py does: asyncio's has a bug before
    from asyncio import timeout as async_timeout  # type: ignore[attr-defined,unused-ignore]
else:  # redis-py's dependency there
    from async_timeout import timeout as async_timeout  # type: ignore[import-not-found,unused-ignore]

__all__ = ["CONNECT_TIMEOUT", "RETRY", "SOCKET_TIMEOUT", "Wire"]

logger: Final = logging.getLogger("peerpy_server.cluster")

#: Seconds to connect to Redis, and to wait for an answer.
CONNECT_TIMEOUT: Final = 2.0
SOCKET_TIMEOUT: Final = 5.0
#: Seconds between two attempts to reach Redis again.
RETRY: Final = 0.5
#: Errors that mean "Redis is unreachable or out of step" on a connection.
WIRE_ERRORS: Final = (RedisError, OSError, asyncio.TimeoutError)


class Wire:
    """The connections of one instance to the Redis at ``url``.

    ``counted()`` is called once per round trip (the broker's
    ``redis_round_trips_total``).
    """

    def __init__(self, url: str, counted: Callable[[], None]) -> None:
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
        }
        self._redis = aioredis.from_url(url, decode_responses=True, **options)
        # RESP2, bytes: relayed batches are parsed by byte lengths.  This pool
        # is only the dedicated connections' factory (URL, TLS, AUTH, db as the
        # URL says); it never hands out one.
        self._factory = aioredis.ConnectionPool.from_url(url, protocol=2, **options)
        self._counted = counted
        #: The direct publishes' connection (``None`` until used, or after it failed).
        self.publisher: AbstractConnection | None = None
        #: Our channel is subscribed (the subscription connection is up).
        self.subscribed = False
        #: Set when the instance closes: the subscription stops.
        self.closing = False

    def _connection(self) -> AbstractConnection:
        """A new dedicated connection (not connected yet) without a read timeout.

        With a socket_timeout redis-py would run each send in a task
        (asyncio.wait_for); the callers use one timeout context instead.
        """
        factory = self._factory
        return factory.connection_class(**{**factory.connection_kwargs, "socket_timeout": None})

    async def aclose(self) -> None:
        """Close every connection.  Cancelling it may leave a socket to the garbage collector."""
        if self.publisher is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.publisher.disconnect(nowait=True)
        await self._redis.aclose()

    # -- calls ------------------------------------------------------------------

    async def run(self, script: Lua, keys: list[str], args: list[str]) -> Any:
        """One script call (loading the script if Redis lost it).

        Raise :class:`RedisError` or :class:`OSError` if Redis cannot run it.
        Cancelling it abandons the call (the pooled connection is dropped).
        """
        try:
            reply = await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.script_load(script.value)
            reply = await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        self._counted()
        return reply

    async def get(self, key: str) -> str | None:
        """``GET key``.

        Raise :class:`RedisError` or :class:`OSError` if Redis cannot answer.
        Cancelling it abandons the call (the pooled connection is dropped).
        """
        value = await self._redis.get(key)
        self._counted()
        return None if value is None else str(value)

    async def execute(self, calls: list[Call]) -> list[Any]:
        """Send ``calls`` in one round trip; one reply (or exception) per call.

        Calls whose script Redis lost are sent again once the scripts are
        loaded.  Raise if the pipeline fails (a failure of the publisher only
        fails the direct publishes: their replies are the exception).
        Cancelling it abandons the round trip; the publisher, then out of
        step, is dropped.
        """
        replies = await self._pipeline(calls)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            for script in Lua:
                await self._redis.script_load(script.value)
            again = await self._pipeline([calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[Call]) -> list[Any]:
        """One round trip: direct publishes on the publisher, the rest in one pipeline.

        The direct publishes are written first in one send, their replies read
        after the pipeline's.  A failure of that connection (or Redis silent
        for ``SOCKET_TIMEOUT``: redis-py then cuts it) fails only the direct
        publishes; a failure of the pipeline raises.
        """
        replies: list[Any] = [None] * len(calls)
        direct = [index for index, call in enumerate(calls) if type(call) is Direct]
        wire: AbstractConnection | None = None
        if direct:
            try:
                wire = self.publisher
                if wire is None:
                    wire = self.publisher = self._connection()
                commands = [(b"PUBLISH", c.channel, c.payload) for c in _directs(calls, direct)]
                async with async_timeout(SOCKET_TIMEOUT):
                    await wire.send_packed_command(wire.pack_commands(commands), check_health=False)
            except WIRE_ERRORS as exc:
                wire = None
                await self._publisher_failed(direct, replies, exc)
        rest = [i for i, call in enumerate(calls) if type(call) is not Direct]
        if rest:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for index in rest:
                        call = calls[index]
                        if type(call) is Publish:
                            pipe.publish(call.channel, call.payload)
                        elif type(call) is RouteCall:
                            keys, args = call.keys, call.args
                            pipe.evalsha(Lua.ROUTE.sha, len(keys), *keys, *args)
                        elif type(call) is Eval:
                            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
                    answers: list[Any] = await pipe.execute(raise_on_error=False)
            except BaseException:
                if wire is not None:  # its replies will not be read: out of step
                    self.publisher = None
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
            except WIRE_ERRORS as exc:
                await self._publisher_failed(direct, replies, exc)
        self._counted()
        return replies

    async def _publisher_failed(
        self, direct: list[int], replies: list[Any], exc: BaseException
    ) -> None:
        """The publisher failed: drop it, fail the publishes not answered."""
        for index in direct:
            if replies[index] is None:
                replies[index] = exc
        wire, self.publisher = self.publisher, None
        if wire is not None:
            # redis-py already disconnected it for a socket error or timeout;
            # a reply error (never for PUBLISH) leaves it out of step: close it.
            with contextlib.suppress(*WIRE_ERRORS):
                await wire.disconnect(nowait=True)

    # -- the subscription ---------------------------------------------------------

    async def subscribe(
        self, channel: str, received: Callable[[bytes], None], ready: Callable[[], None]
    ) -> None:
        """Read ``channel`` until :attr:`closing`: ``received(batch)`` per message.

        ``ready()`` is called each time the subscription is (again) in place;
        a lost connection is opened again after :data:`RETRY`.  Cancelling it
        closes the subscription.
        """
        while not self.closing:
            await self._subscribe_once(channel, received, ready)
            await asyncio.sleep(RETRY)

    async def _subscribe_once(
        self, channel: str, received: Callable[[bytes], None], ready: Callable[[], None]
    ) -> None:
        """One subscription on a dedicated connection, until that connection is lost.

        No read timeout (a quiet channel is normal): a lost Redis shows as the
        connection closing.
        """
        wire = self._connection()
        try:
            # Connects first (socket_connect_timeout), authenticates, selects the db.
            await wire.send_packed_command(
                wire.pack_command(b"SUBSCRIBE", channel), check_health=False
            )
            reply = await asyncio.wait_for(wire.read_response(), SOCKET_TIMEOUT)
            if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                raise RedisError(f"unexpected SUBSCRIBE reply {reply!r}")
            self.subscribed = True
            ready()
            while not self.closing:
                push = await wire.read_response()
                if type(push) is list and len(push) == 3 and push[0] == b"message":
                    received(push[2])
        except WIRE_ERRORS as exc:
            if self.subscribed:
                logger.warning("Lost the Redis subscription (%s); retrying", exc)
        finally:
            self.subscribed = False
            with contextlib.suppress(*WIRE_ERRORS):
                await wire.disconnect(nowait=True)


def _directs(calls: list[Call], indexes: list[int]) -> list[Direct]:
    out = []
    for index in indexes:
        call = calls[index]
        assert type(call) is Direct
        out.append(call)
    return out
