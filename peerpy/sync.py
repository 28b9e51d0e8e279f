"""The blocking facade: peerpy for scripts, with the same names as the async API.

Each :class:`Peer` here runs an async :class:`peerpy.Peer` on its own event
loop thread (an anyio blocking portal) and forwards every call to it; there is
no second implementation.  Event handlers run one at a time, in order, on a
dispatcher thread of the peer, so a handler may call blocking methods.

>>> from peerpy.sync import Peer                        # doctest: +SKIP
>>> with Peer("alice") as peer, peer.connect("bob") as conn:
...     conn.send("hello")
...     print(conn.recv())
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import queue
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from . import connection as _connection
from . import dataconnection as _dataconnection
from . import mediaconnection as _mediaconnection
from . import peer as _peer
from .backends import loop_options
from .events import PEER_EVENTS, PeerEvent, check_event
from .exceptions import ConnectionClosedError, DisconnectedError
from .rooms.blocking import Room
from .stats import ConnectionStats

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

__all__ = ["DataConnection", "MediaConnection", "Peer", "Room"]

T = TypeVar("T")
_log = logging.getLogger("peerpy.sync")


class _Dispatcher:
    """Runs sync event handlers in order on one thread."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception:
                _log.exception("event handler failed")

    def submit(self, job: Callable[[], None]) -> None:
        self._queue.put(job)

    def stop(self) -> None:
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)


class _Connection:
    """What the blocking data and media connections share."""

    def __init__(self, conn: _connection.Connection, owner: Peer) -> None:
        self._conn = conn
        self._owner = owner

    def __repr__(self) -> str:
        return repr(self._conn).replace("<", "<sync ", 1)

    def __getattr__(self, name: str) -> Any:
        # Plain attributes: peer, connection_id, metadata, open, closed, error,
        # peer_connection, and each kind's own (label, remote_stream...).  An
        # async method becomes a blocking one, never an un-awaited coroutine.
        value = getattr(self._conn, name)
        if inspect.iscoroutinefunction(value):
            return _blocking(self._owner, value)
        return value

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until the connection is closed."""

        async def wait() -> None:
            with anyio.fail_after(timeout):
                await self._conn.wait_closed()

        self._owner._call(wait)

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` on the peer's dispatcher thread each time ``event`` happens.

        A first ``data`` handler also gets the values received before it and
        not read, in order, before any later one.
        """
        # Register on the event loop thread: there the connection hands the
        # values it holds to the new handler with no message slipping between.
        forward = self._owner._forwarder(self._conn, event, handler)
        self._owner._call_sync(self._conn.on, event, forward)
        return handler

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        """Stop calling ``handler`` for ``event``."""
        forward = self._owner._forwarders.pop((id(self._conn), event, handler), None)
        if forward is not None:
            self._owner._call_sync(self._conn.off, event, forward)

    def stats(self) -> ConnectionStats:
        """The connection's numbers now (see :meth:`peerpy.DataConnection.stats`)."""
        return self._owner._call(self._conn.stats)

    def raw_stats(self) -> Mapping[str, Any]:
        """The backend's full stats report (see :meth:`peerpy.DataConnection.raw_stats`)."""
        return self._owner._call(self._conn.raw_stats)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError


class DataConnection(_Connection):
    """Blocking twin of :class:`peerpy.DataConnection`."""

    _conn: _dataconnection.DataConnection

    def send(self, value: Any) -> None:
        """Send ``value``; blocks while the channel is over its high-water mark."""
        self._owner._call(self._conn.send, value)

    def recv(self, timeout: float | None = None) -> Any:
        """Return the next value; raise ``TimeoutError`` after ``timeout`` seconds."""

        async def recv() -> Any:
            with anyio.fail_after(timeout):
                return await self._conn.recv()

        return self._owner._call(recv)

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosedError:
                return

    def close(self, *, flush: bool = False) -> None:
        """Close the connection (see :meth:`peerpy.DataConnection.close`)."""
        self._owner._call(lambda: self._conn.close(flush=flush))


class MediaConnection(_Connection):
    """Blocking twin of :class:`peerpy.MediaConnection`."""

    _conn: _mediaconnection.MediaConnection

    def answer(self, tracks: Any = None, **options: Any) -> None:
        """Answer an incoming call (see :meth:`peerpy.MediaConnection.answer`)."""
        self._owner._call(lambda: self._conn.answer(tracks, **options))

    def wait_stream(self, timeout: float | None = None) -> _mediaconnection.MediaStream:
        """Block until the remote stream with all its tracks is known."""

        async def wait() -> _mediaconnection.MediaStream:
            with anyio.fail_after(timeout):
                return await self._conn.wait_stream()

        return self._owner._call(wait)

    def close(self) -> None:
        """Hang up."""
        self._owner._call(self._conn.close)


def _blocking(owner: Peer, method: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """``method`` (async) as a blocking call on ``owner``'s event loop thread."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> T:
        return owner._call(lambda: method(*args, **kwargs))

    return call


class Peer:
    """Blocking twin of :class:`peerpy.Peer`; takes the same arguments.

    Handlers may be registered with :meth:`on` before :meth:`start` (they
    then hear the first ``open``).
    """

    def __init__(self, id: str | None = None, **options: Any) -> None:
        self._id_arg = id
        self._options = options
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self._peer: _peer.Peer | None = None
        self._dispatcher: _Dispatcher | None = None
        self._wrappers: dict[int, _Connection] = {}
        # (id of the async object, event, handler) -> what was registered there.
        self._forwarders: dict[tuple[int, str, Callable[..., Any]], Callable[..., None]] = {}
        self._early: list[tuple[str, Callable[..., None]]] = []  # on() before start()

    def __enter__(self) -> Peer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the event loop thread and register with the broker."""
        if self._portal is not None:
            return
        self._dispatcher = _Dispatcher(f"peerpy-events-{self._id_arg or 'peer'}")
        self._stack.callback(self._dispatcher.stop)
        try:
            portal = start_blocking_portal("asyncio", loop_options())
            self._portal = self._stack.enter_context(portal)
            self._peer = peer = self._portal.call(self._make_peer)
            for event, forward in self._early:  # before registering: they hear "open"
                peer.on(event, forward)  # type: ignore[call-overload]
            self._stack.enter_context(self._portal.wrap_async_context_manager(peer))
        except BaseException:
            self._stack.close()
            self._portal = self._peer = None
            raise

    async def _make_peer(self) -> _peer.Peer:
        options = dict(self._options)
        token = options.get("token")
        if callable(token) and not inspect.iscoroutinefunction(token):
            # A blocking token provider (an HTTP call...) runs on a worker thread.
            options["token"] = functools.partial(anyio.to_thread.run_sync, token)
        return _peer.Peer(self._id_arg, **options)

    def close(self) -> None:
        """Close every connection, leave the broker and stop the loop thread."""
        self._stack.close()

    destroy = close

    def _call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._portal is None:
            raise DisconnectedError("the peer is not started (use `with Peer(...) as peer`)")
        return self._portal.call(func, *args)

    def _call_sync(self, func: Callable[..., T], *args: Any) -> T:
        """Run a plain function on the event loop thread."""
        if self._portal is None:
            raise DisconnectedError("the peer is not started (use `with Peer(...) as peer`)")
        return self._portal.call(func, *args)

    def _async_peer(self) -> _peer.Peer:
        if self._peer is None:
            raise DisconnectedError("the peer is not started (use `with Peer(...) as peer`)")
        return self._peer

    @overload
    def _wrap(self, conn: _dataconnection.DataConnection) -> DataConnection: ...
    @overload
    def _wrap(self, conn: _mediaconnection.MediaConnection) -> MediaConnection: ...
    @overload
    def _wrap(self, conn: _connection.Connection) -> _Connection: ...
    def _wrap(self, conn: _connection.Connection) -> _Connection:
        wrapper = self._wrappers.get(id(conn))
        if wrapper is None or wrapper._conn is not conn:
            kind = (
                MediaConnection
                if isinstance(conn, _mediaconnection.MediaConnection)
                else DataConnection
            )
            wrapper = self._wrappers[id(conn)] = kind(conn, self)
        return wrapper

    def _dispatching(self, handler: Callable[..., Any]) -> Callable[..., None]:
        def forward(*args: Any) -> None:
            wrapped = [self._wrap(a) if isinstance(a, _connection.Connection) else a for a in args]
            assert self._dispatcher is not None
            self._dispatcher.submit(lambda: handler(*wrapped))

        return forward

    def _forwarder(self, target: object, event: str, handler: Callable[..., Any]) -> Any:
        """The dispatching twin of ``handler``, remembered for :meth:`off`."""
        forward = self._dispatching(handler)
        self._forwarders[(id(target), event, handler)] = forward
        return forward

    # -- forwarded API ------------------------------------------------------

    @property
    def id(self) -> str | None:
        return self._peer.id if self._peer else self._id_arg

    @property
    def token(self) -> str | None:
        """The secret owning our id on the broker (``None`` before :meth:`start`).

        Setting it gives the next registration a new token (see
        :attr:`peerpy.Peer.token`); before :meth:`start`, the first one.
        """
        return self._peer.token if self._peer else None

    @token.setter
    def token(self, value: str) -> None:
        if self._peer is None:
            self._options["token"] = value
        else:
            self._call_sync(setattr, self._peer, "token", value)

    @property
    def open(self) -> bool:
        return bool(self._peer and self._peer.open)

    @property
    def disconnected(self) -> bool:
        """Whether the broker session is closed (also before :meth:`start`)."""
        return not self.open

    @property
    def connections(self) -> list[_Connection]:
        """The live connections, data and media (blocking twins)."""
        if self._peer is None:
            return []
        return [
            self._wrap(conn) for conn in self._call_sync(lambda: self._async_peer().connections)
        ]

    def get_connection(self, peer: str, connection_id: str) -> _Connection | None:
        """The connection with ``peer`` whose id is ``connection_id``, if any."""
        if self._peer is None:
            return None
        conn = self._call_sync(self._peer.get_connection, peer, connection_id)
        return None if conn is None else self._wrap(conn)

    @property
    def destroyed(self) -> bool:
        return bool(self._peer and self._peer.destroyed)

    def connect(self, peer: str, **options: Any) -> DataConnection:
        """Open a data connection (see :meth:`peerpy.Peer.connect`)."""
        async_peer = self._async_peer()
        return self._wrap(self._call(lambda: async_peer.connect(peer, **options)))

    def accept(self, timeout: float | None = None) -> DataConnection:
        """Wait for the next incoming data connection."""

        async_peer = self._async_peer()

        async def accept() -> _dataconnection.DataConnection:
            with anyio.fail_after(timeout):
                return await async_peer.accept()

        return self._wrap(self._call(accept))

    def __iter__(self) -> Iterator[DataConnection]:
        while True:
            try:
                yield self.accept()
            except DisconnectedError:
                return

    def call(self, peer: str, tracks: Any = None, **options: Any) -> MediaConnection:
        """Call ``peer`` with aiortc tracks (see :meth:`peerpy.Peer.call`)."""
        async_peer = self._async_peer()
        return self._wrap(self._call(lambda: async_peer.call(peer, tracks, **options)))

    def accept_call(self, timeout: float | None = None) -> MediaConnection:
        """Wait for the next incoming call, not yet answered."""

        async_peer = self._async_peer()

        async def accept() -> _mediaconnection.MediaConnection:
            with anyio.fail_after(timeout):
                return await async_peer.accept_call()

        return self._wrap(self._call(accept))

    def calls(self) -> Iterator[MediaConnection]:
        """Incoming calls, until the peer is destroyed."""
        while True:
            try:
                yield self.accept_call()
            except DisconnectedError:
                return

    def join(self, room: str, *, metadata: Any = None) -> Room:
        """``with peer.join(room, metadata=...) as room:`` (see :class:`peerpy.room.Room`)."""
        async_peer = self._async_peer()
        return Room(self._call_sync(lambda: async_peer.join(room, metadata=metadata)), self)

    def list_peers(self) -> list[str]:
        """Ids registered on the broker (needs discovery on)."""
        return self._call(self._async_peer().list_peers)

    def disconnect(self) -> None:
        """Close the broker session; connections stay up."""
        self._call(self._async_peer().disconnect)

    def reconnect(self) -> None:
        """Register again with the same id and token."""
        self._call(self._async_peer().reconnect)

    def on(self, event: PeerEvent, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` on the dispatcher thread each time ``event`` happens.

        Works before :meth:`start` too: the handler then hears the first ``open``.
        """
        forward = self._forwarder(self, event, handler)
        if self._peer is None:
            check_event(event, PEER_EVENTS)
            self._early.append((event, forward))
        else:
            self._call_sync(self._peer.on, event, forward)
        return handler

    def off(self, event: PeerEvent, handler: Callable[..., Any]) -> None:
        """Stop calling ``handler`` for ``event``."""
        forward = self._forwarders.pop((id(self), event, handler), None)
        if forward is None:
            return
        if self._peer is None:
            self._early.remove((event, forward))
        else:
            self._call_sync(self._peer.off, event, forward)
