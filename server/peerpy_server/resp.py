"""A raw RESP2 connection to Redis for the cluster's hot path (:mod:`peerpy_server.cluster`).

redis-py costs about 180 µs of CPU per pipeline and 75 µs per pub/sub message
in its pure-Python layers (measured with uvloop on the 2-core VM, see
docs/broker.md); at a few thousand messages per second in small batches that
was most of a cluster broker's CPU.  Two things go through this instead:
the ``PUBLISH`` of a batch to an instance whose address is cached, and the
subscription to this instance's channel.  Everything else (scripts, claims,
sweeps) stays on redis-py.

Only what those two need is here: ``redis://`` and ``unix://`` URLs (the
``rediss://`` ones keep redis-py's path), ``AUTH`` from the URL, commands as
arrays of bulk strings, and replies: simple strings, errors, integers, bulk
strings and (nested) arrays, with pub/sub ``message`` pushes handed to a
callback.  Pub/sub does not depend on the database number, so there is no
``SELECT``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

from redis.exceptions import ResponseError

__all__ = ["RespConnection", "supports"]

#: Replies larger than this (bytes) close the connection: a Redis that sends
#: one is not one we talk to (our largest is a batch of relayed frames).
MAX_REPLY: Final = 512 * 1024 * 1024

_INCOMPLETE: Final = object()


def supports(url: str) -> bool:
    """Whether :class:`RespConnection` can reach ``url`` (no TLS here)."""
    return url.startswith(("redis://", "unix://"))


def encode(args: tuple[bytes, ...]) -> bytes:
    """One command as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def parse(data: bytes, pos: int) -> tuple[Any, int]:
    """One reply from ``data`` at ``pos``: ``(value, next pos)``, value ``_INCOMPLETE`` if cut.

    Errors come back as :class:`~redis.exceptions.ResponseError` values;
    a malformed reply raises :class:`ValueError`.
    """
    end = data.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = data[pos]
    line = data[pos + 1 : end]
    after = end + 2
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, after
        if size > MAX_REPLY:
            raise ValueError(f"reply of {size} bytes")
        if len(data) < after + size + 2:
            return _INCOMPLETE, pos
        return data[after : after + size], after + size + 2
    if kind == 0x3A:  # : integer
        return int(line), after
    if kind == 0x2A or kind == 0x3E:  # * array, > push (RESP3, not asked for)
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse(data, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, after
    if kind == 0x2B:  # + simple string
        return line, after
    if kind == 0x2D:  # - error
        return ResponseError(line.decode("utf-8", "replace")), after
    raise ValueError(f"unknown RESP type {chr(kind)!r}")


class RespConnection(asyncio.Protocol):
    """One connection: :meth:`call` sends a command; replies resolve in order.

    With ``on_push``, pub/sub ``message`` arrays are not replies: their
    payloads go to ``on_push``, all those of one read in one call.  When the
    connection is lost, every pending call fails with :class:`ConnectionError`
    and :attr:`closed` resolves.
    """

    def __init__(self, on_push: Callable[[list[bytes]], None] | None = None) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._on_push = on_push
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls, url: str, *, timeout: float, on_push: Callable[[list[bytes]], None] | None = None
    ) -> RespConnection:
        """Connect to ``url`` (see :func:`supports`) and authenticate as it says."""
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        if parts.scheme == "unix":
            connecting = loop.create_unix_connection(lambda: cls(on_push), unquote(parts.path))
        else:
            host, port = parts.hostname or "localhost", parts.port or 6379
            connecting = loop.create_connection(lambda: cls(on_push), host, port)
        _, connection = await asyncio.wait_for(connecting, timeout)
        try:
            if parts.password is not None:
                user = parts.username
                credentials = [unquote(user).encode()] if user else []
                password = unquote(parts.password).encode()
                reply = await asyncio.wait_for(
                    connection.call(b"AUTH", *credentials, password), timeout
                )
                if isinstance(reply, Exception):
                    raise reply
        except BaseException:
            connection.close()
            raise
        return connection

    def call(self, *args: bytes) -> asyncio.Future[Any]:
        """Send one command; the future gets its reply (a ``ResponseError`` value for an error)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionError("the Redis connection is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        transport.write(encode(args))
        return future

    def close(self) -> None:
        """Close the connection (pending calls fail)."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close the connection at once, unsent data dropped (pending calls fail)."""
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        error = ConnectionError(f"the Redis connection was lost: {exc or 'closed'}")
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos, size = 0, len(buffer)
        pushes: list[bytes] = []
        try:
            while pos < size:
                value, after = parse(buffer, pos)
                if value is _INCOMPLETE:
                    break
                pos = after
                if (
                    self._on_push is not None
                    and type(value) is list
                    and len(value) == 3
                    and value[0] == b"message"
                ):
                    pushes.append(value[2])
                elif self._waiting:
                    future = self._waiting.popleft()
                    if not future.done():
                        future.set_result(value)
                else:
                    raise ValueError("a reply nobody asked for")
        except ValueError:
            self._buffer = b""
            self.abort()
            return
        finally:
            if pushes and self._on_push is not None:
                self._on_push(pushes)
        self._buffer = buffer[pos:] if pos < size else b""
