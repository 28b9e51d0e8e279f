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
import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from . import dataconnection as _dataconnection
from . import peer as _peer
from .exceptions import ConnectionClosedError, DisconnectedError

__all__ = ["DataConnection", "Peer"]


class _Dispatcher:
    """Runs sync event handlers in order on one thread."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            job()

    def submit(self, job: Callable[[], None]) -> None:
        self._queue.put(job)

    def stop(self) -> None:
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)


class DataConnection:
    """Blocking twin of :class:`peerpy.DataConnection`."""

    def __init__(self, conn: _dataconnection.DataConnection, owner: Peer) -> None:
        self._conn = conn
        self._owner = owner

    def __repr__(self) -> str:
        return repr(self._conn).replace("<", "<sync ", 1)

    def __getattr__(self, name: str) -> Any:
        # Plain attributes: peer, connection_id, label, metadata, serialization,
        # reliable, open, closed, error, buffered_amount, peer_connection...
        return getattr(self._conn, name)

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

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until the connection is closed."""

        async def wait() -> None:
            with anyio.fail_after(timeout):
                await self._conn.wait_closed()

        self._owner._call(wait)

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` on the peer's dispatcher thread each time ``event`` happens."""
        self._conn.on(event, self._owner._dispatching(handler))
        return handler

    def __enter__(self) -> DataConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Peer:
    """Blocking twin of :class:`peerpy.Peer`; takes the same arguments."""

    def __init__(self, id: str | None = None, **options: Any) -> None:
        self._id_arg = id
        self._options = options
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self._peer: _peer.Peer | None = None
        self._dispatcher: _Dispatcher | None = None
        self._wrappers: dict[int, DataConnection] = {}

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
        try:
            self._portal = self._stack.enter_context(start_blocking_portal("asyncio"))
            self._peer = self._portal.call(self._make_peer)
            self._stack.enter_context(self._portal.wrap_async_context_manager(self._peer))
        except BaseException:
            self._stack.close()
            raise
        self._dispatcher = _Dispatcher(f"peerpy-events-{self._peer.id}")
        self._stack.callback(self._dispatcher.stop)

    async def _make_peer(self) -> _peer.Peer:
        return _peer.Peer(self._id_arg, **self._options)

    def close(self) -> None:
        """Close every connection, leave the broker and stop the loop thread."""
        self._stack.close()

    destroy = close

    def _call(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._portal is None:
            raise DisconnectedError("the peer is not started (use `with Peer(...) as peer`)")
        return self._portal.call(func, *args)

    def _wrap(self, conn: _dataconnection.DataConnection) -> DataConnection:
        wrapper = self._wrappers.get(id(conn))
        if wrapper is None or wrapper._conn is not conn:
            wrapper = self._wrappers[id(conn)] = DataConnection(conn, self)
        return wrapper

    def _dispatching(self, handler: Callable[..., Any]) -> Callable[..., None]:
        def forward(*args: Any) -> None:
            wrapped = [
                self._wrap(a) if isinstance(a, _dataconnection.DataConnection) else a for a in args
            ]
            assert self._dispatcher is not None
            self._dispatcher.submit(lambda: handler(*wrapped))

        return forward

    # -- forwarded API ------------------------------------------------------

    @property
    def id(self) -> str | None:
        return self._peer.id if self._peer else self._id_arg

    @property
    def open(self) -> bool:
        return bool(self._peer and self._peer.open)

    @property
    def destroyed(self) -> bool:
        return bool(self._peer and self._peer.destroyed)

    def connect(self, peer: str, **options: Any) -> DataConnection:
        """Open a data connection (see :meth:`peerpy.Peer.connect`)."""
        assert self._peer is not None or self._portal is None
        conn = self._call(lambda: self._peer.connect(peer, **options))  # type: ignore[union-attr]
        return self._wrap(conn)

    def accept(self, timeout: float | None = None) -> DataConnection:
        """Wait for the next incoming data connection."""

        async def accept() -> _dataconnection.DataConnection:
            assert self._peer is not None
            with anyio.fail_after(timeout):
                return await self._peer.accept()

        return self._wrap(self._call(accept))

    def __iter__(self) -> Iterator[DataConnection]:
        while True:
            try:
                yield self.accept()
            except DisconnectedError:
                return

    def list_peers(self) -> list[str]:
        """Ids registered on the broker (needs discovery on)."""
        return list(self._call(lambda: self._peer.list_peers()))  # type: ignore[union-attr]

    def disconnect(self) -> None:
        """Close the broker session; connections stay up."""
        self._call(lambda: self._peer.disconnect())  # type: ignore[union-attr]

    def reconnect(self) -> None:
        """Register again with the same id and token."""
        self._call(lambda: self._peer.reconnect())  # type: ignore[union-attr]

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` on the dispatcher thread each time ``event`` happens."""
        if self._peer is None:
            raise DisconnectedError("the peer is not started (use `with Peer(...) as peer`)")
        self._peer.on(event, self._dispatching(handler))
        return handler
