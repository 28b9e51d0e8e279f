"""The blocking facade: peerpy for scripts, with the same names as the async API.

Each :class:`Peer` here runs an async :class:`peerpy.Peer` on its own event
loop thread (an anyio blocking portal) and forwards every call to it; there is
no second implementation.  Event handlers run one at a time, in order, on a
dispatcher thread of the peer, so a handler may call blocking methods.

:class:`Peer`, :class:`DataConnection` and :class:`MediaConnection` have the
public names of their async twins (a test compares them); what differs:
``start()``/``close()`` replace ``async with``/``aclose()``, the waiting
methods take a ``timeout``, and the plumbing a peer calls on its connections
(``deliver``, ``run``) is not there (see :data:`peerpy.blocking.ASYNC_ONLY`).
Media frames are read with :class:`FrameCounter` and :class:`Recorder`, the
blocking twins of :mod:`peerpy.media`'s (in :mod:`peerpy.blocking`).

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
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from . import connection as _connection
from . import dataconnection as _dataconnection
from . import mediaconnection as _mediaconnection
from . import peer as _peer
from .backends import loop_options
from .blocking import (
    DataConnection,
    Forward,
    FrameCounter,
    MediaConnection,
    MediaStream,
    Recorder,
    repeat,
    within,
)
from .blocking import _Connection as _Connection
from .config import ServerAddress
from .events import PeerEvent
from .exceptions import DisconnectedError
from .rooms.blocking import Room

__all__ = [
    "DataConnection",
    "FrameCounter",
    "MediaConnection",
    "MediaStream",
    "Peer",
    "Recorder",
    "Room",
]

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


class Peer:
    """Blocking twin of :class:`peerpy.Peer`; takes the same arguments.

    The async peer is made at once (a bad argument raises here, and
    ``backend``, ``timeouts``... are there before :meth:`start`), and started
    by :meth:`start` or ``with``.  Handlers may be registered with :meth:`on`
    before :meth:`start` (they then hear the first ``open``).
    """

    def __init__(self, id: str | None = None, **options: Any) -> None:
        self._id_arg = id
        self._options = options
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self._dispatcher: _Dispatcher | None = None
        self._wrappers: dict[int, _Connection] = {}
        # (id of the async object, event, handler) -> what was registered there.
        self._forwarders: dict[tuple[int, str, Callable[..., Any]], Callable[..., None]] = {}
        self._early: list[tuple[PeerEvent, Callable[..., None]]] = []  # on() before start()
        self._peer = self._make_peer()

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
            self._stack.enter_context(self._portal.wrap_async_context_manager(self._peer))
        except BaseException:
            self._stack.close()
            self._portal = None
            self._peer = self._make_peer()  # a Peer starts once: a fresh one for the next try
            raise

    def _make_peer(self) -> _peer.Peer:
        options = dict(self._options)
        token = options.get("token")
        if callable(token) and not inspect.iscoroutinefunction(token):
            # A blocking token provider (an HTTP call...) runs on a worker thread.
            options["token"] = functools.partial(anyio.to_thread.run_sync, token)
        peer = _peer.Peer(self._id_arg, **options)
        for event, forward in self._early:  # registered before start(): they hear "open"
            peer.on(event, forward)
        return peer

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

    def _read(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the event loop thread once started; before, here (nothing runs)."""
        return func(*args) if self._portal is None else self._call_sync(func, *args)

    def _wrap_async_context(self, target: Any) -> Any:
        """``async with target`` on the event loop thread, as a blocking context manager."""
        if self._portal is None:
            raise DisconnectedError("the peer is not started (use `with Peer(...) as peer`)")
        return self._portal.wrap_async_context_manager(target)

    @overload
    def _wrap(self, conn: _dataconnection.DataConnection) -> DataConnection: ...
    @overload
    def _wrap(self, conn: _mediaconnection.MediaConnection) -> MediaConnection: ...
    @overload
    def _wrap(self, conn: _connection.Connection) -> _Connection: ...
    def _wrap(self, conn: _connection.Connection) -> _Connection:
        wrapper = self._wrappers.get(id(conn))
        if wrapper is None or wrapper._conn is not conn:
            if isinstance(conn, _mediaconnection.MediaConnection):
                wrapper = MediaConnection(conn, self)
            else:
                assert isinstance(conn, _dataconnection.DataConnection)
                wrapper = DataConnection(conn, self)
            self._wrappers[id(conn)] = wrapper
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

    def _on(self, target: Any, event: str, handler: Callable[..., Any]) -> None:
        """Have ``target`` (an async object on the loop) call ``handler`` on the dispatcher.

        Registered on the event loop thread: there the target hands the values
        it holds to the new handler with no message slipping between.
        """
        self._call_sync(target.on, event, self._forwarder(target, event, handler))

    def _off(self, target: Any, event: str, handler: Callable[..., Any]) -> None:
        """Undo :meth:`_on` (nothing if ``handler`` is not registered)."""
        forward = self._forwarders.pop((id(target), event, handler), None)
        if forward is not None:
            self._call_sync(target.off, event, forward)

    # -- forwarded API ------------------------------------------------------

    @property
    def id(self) -> str | None:
        """This peer's id (``None`` until the broker gave one)."""
        return self._peer.id

    @property
    def token(self) -> str | None:
        """The secret owning our id on the broker (``None`` before :meth:`start`).

        Setting it gives the next registration a new token (see
        :attr:`peerpy.Peer.token`); before :meth:`start`, the first one.
        """
        return self._peer.token if self._portal is not None else None

    @token.setter
    def token(self, value: str) -> None:
        if self._portal is None:
            self._options["token"] = value
        self._read(setattr, self._peer, "token", value)

    open = Forward(
        "Whether the broker session is open (we can connect and be reached).",
        via="_peer",
        settable=False,
    )

    @property
    def disconnected(self) -> bool:
        """Whether the broker session is closed (also before :meth:`start`)."""
        return not self.open

    destroyed = Forward(
        "Whether the peer is destroyed: nothing works any more.", via="_peer", settable=False
    )

    @property
    def server(self) -> ServerAddress:
        """The broker in use (one of :attr:`servers`)."""
        return self._peer.server

    @server.setter
    def server(self, address: ServerAddress) -> None:
        self._read(setattr, self._peer, "server", address)

    servers = Forward(
        "Every broker of the cluster (see :attr:`peerpy.Peer.servers`).",
        via="_peer",
        settable=False,
    )
    backend = Forward(
        'The backend of data connections: ``"aiortc"`` or ``"wrtc"`` (:mod:`peerpy.backends`).',
        via="_peer",
        settable=False,
    )
    configuration = Forward(
        "aiortc's configuration of the peer connections (ICE servers).", via="_peer", settable=False
    )
    network = Forward(
        "Where ICE may gather and connect (see :mod:`peerpy.network`).", via="_peer", settable=False
    )
    timeouts = Forward("The peer's timeouts.", via="_peer", settable=False)
    limits = Forward("The peer's limits.", via="_peer", settable=False)

    @property
    def connections(self) -> list[_Connection]:
        """The live connections, data and media (blocking twins)."""
        return [self._wrap(conn) for conn in self._read(lambda: self._peer.connections)]

    def get_connection(self, peer: str, connection_id: str) -> _Connection | None:
        """The connection with ``peer`` whose id is ``connection_id``, if any."""
        conn = self._read(self._peer.get_connection, peer, connection_id)
        return None if conn is None else self._wrap(conn)

    def half_open_connections(self) -> list[_Connection]:
        """Incoming connections whose OFFER arrived but which are not open yet, oldest first."""
        return [self._wrap(conn) for conn in self._read(self._peer.half_open_connections)]

    def connect(self, peer: str, **options: Any) -> DataConnection:
        """Open a data connection (see :meth:`peerpy.Peer.connect`)."""
        return self._wrap(self._call(lambda: self._peer.connect(peer, **options)))

    def accept(self, timeout: float | None = None) -> DataConnection:
        """Wait for the next incoming data connection."""
        return self._wrap(self._call(within(timeout, self._peer.accept)))

    def __iter__(self) -> Iterator[DataConnection]:
        return repeat(self.accept, until=DisconnectedError)

    def call(self, peer: str, tracks: Any = None, **options: Any) -> MediaConnection:
        """Call ``peer`` with aiortc tracks (see :meth:`peerpy.Peer.call`)."""
        return self._wrap(self._call(lambda: self._peer.call(peer, tracks, **options)))

    def accept_call(self, timeout: float | None = None) -> MediaConnection:
        """Wait for the next incoming call, not yet answered."""
        return self._wrap(self._call(within(timeout, self._peer.accept_call)))

    def calls(self) -> Iterator[MediaConnection]:
        """Incoming calls, until the peer is destroyed."""
        return repeat(self.accept_call, until=DisconnectedError)

    def join(self, room: str, *, metadata: Any = None) -> Room:
        """``with peer.join(room, metadata=...) as room:`` (see :class:`peerpy.room.Room`)."""
        return Room(self._call_sync(lambda: self._peer.join(room, metadata=metadata)), self)

    def list_peers(self) -> list[str]:
        """Ids registered on the broker (needs discovery on)."""
        return self._call(self._peer.list_peers)

    def disconnect(self) -> None:
        """Close the broker session; connections stay up."""
        self._call(self._peer.disconnect)

    def reconnect(self) -> None:
        """Register again with the same id and token."""
        self._call(self._peer.reconnect)

    def on(self, event: PeerEvent, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` on the dispatcher thread each time ``event`` happens.

        Works before :meth:`start` too: the handler then hears the first
        ``open``; an ``open`` handler on an open peer runs at once.
        """
        forward = self._forwarder(self, event, handler)
        self._read(self._peer.on, event, forward)
        if self._portal is None:
            self._early.append((event, forward))
        return handler

    def off(self, event: PeerEvent, handler: Callable[..., Any]) -> None:
        """Stop calling ``handler`` for ``event``."""
        forward = self._forwarders.pop((id(self), event, handler), None)
        if forward is None:
            return
        if self._portal is None:
            self._early.remove((event, forward))
        self._read(self._peer.off, event, forward)
