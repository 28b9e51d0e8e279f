"""The blocking twins of connections and media helpers, for :mod:`peerpy.sync`.

Each twin wraps one async object living on a :class:`peerpy.sync.Peer`'s
event loop thread and has the async class's public names: attributes are read
from the async object (set on the loop thread), and each async method is a
blocking one, run on the peer's blocking portal.  Nothing is implemented
twice.  The names the twins leave out, and why, are in :data:`ASYNC_ONLY`.

========================  ===============================================
twin                      async object
========================  ===============================================
:class:`DataConnection`   :class:`peerpy.DataConnection`
:class:`MediaConnection`  :class:`peerpy.MediaConnection`
:class:`MediaStream`      :class:`peerpy.MediaStream` (the same tracks)
:class:`FrameCounter`     :class:`peerpy.media.FrameCounter`
:class:`Recorder`         :class:`peerpy.media.Recorder`
========================  ===============================================
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio
from aiortc import MediaStreamTrack

from . import connection as _connection
from . import dataconnection as _dataconnection
from . import media as _media
from . import mediaconnection as _mediaconnection
from .exceptions import ConnectionClosedError, UsageError
from .stats import ConnectionStats

if TYPE_CHECKING:
    from .sync import Peer

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

__all__ = [
    "ASYNC_ONLY",
    "DataConnection",
    "Forward",
    "FrameCounter",
    "MediaConnection",
    "MediaStream",
    "Recorder",
    "repeat",
    "within",
]

T = TypeVar("T")

#: Public names of the async classes that the blocking twins do not have, and why.
ASYNC_ONLY: dict[str, str] = {
    "deliver": "plumbing: the peer hands a connection its signaling messages",
    "run": "plumbing: the peer's task that applies a connection's signaling messages",
    "aclose": "the async spelling of close(); the blocking Peer has close()",
}


def within(timeout: float | None, wait: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """``wait()`` with a deadline of ``timeout`` seconds (``TimeoutError`` past it)."""

    async def waiting() -> T:
        with anyio.fail_after(timeout):
            return await wait()

    return waiting


def repeat(get: Callable[[], T], *, until: type[Exception]) -> Iterator[T]:
    """``get()`` again and again, until it raises ``until`` (the blocking ``async for``)."""
    while True:
        try:
            yield get()
        except until:
            return


class Forward:
    """A public attribute of the async object (``twin.<via>``), seen through its blocking twin.

    Read directly (the attributes are plain values or properties); set on the
    event loop thread, where the async object lives (``twin._read``), unless
    ``settable=False``.
    """

    def __init__(self, doc: str = "", *, via: str = "_conn", settable: bool = True) -> None:
        self.__doc__ = doc
        self._via = via
        self._settable = settable

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, twin: Any, owner: type | None = None) -> Any:
        if twin is None:
            return self
        return getattr(getattr(twin, self._via), self._name)

    def __set__(self, twin: Any, value: Any) -> None:
        if not self._settable:
            raise AttributeError(f"{self._name} cannot be set")
        twin._read(setattr, getattr(twin, self._via), self._name, value)


class _Connection:
    """What the blocking data and media connections share."""

    type: ClassVar[Any]
    peer = Forward()
    connection_id = Forward()
    metadata = Forward()
    originator = Forward()
    peer_connection = Forward()
    backend = Forward()
    sdp_transform = Forward()
    open = Forward()
    closed = Forward()
    route = Forward()
    error = Forward()
    data_channel = Forward()
    resumable = Forward()
    reconnecting = Forward()
    generation = Forward()
    network_change = Forward()

    def __init__(self, conn: _connection.Connection, owner: Peer) -> None:
        self._conn = conn
        self._owner = owner

    def __repr__(self) -> str:
        return repr(self._conn).replace("<", "<sync ", 1)

    def _read(self, func: Callable[..., T], *args: Any) -> T:
        return self._owner._read(func, *args)

    def wait_open(self, timeout: float | None = None) -> None:
        """Block until the connection is open; raise why it failed if it closes first."""
        self._owner._call(within(timeout, self._conn.wait_open))

    def wait_closed(self, timeout: float | None = None) -> None:
        """Block until the connection is closed."""
        self._owner._call(within(timeout, self._conn.wait_closed))

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` on the peer's dispatcher thread each time ``event`` happens.

        A first ``data`` handler also gets the values received before it and
        not read, in order, before any later one; an ``open`` handler on an
        open connection runs at once (as in the async API).
        """
        self._owner._on(self._conn, event, handler)
        return handler

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        """Stop calling ``handler`` for ``event``."""
        self._owner._off(self._conn, event, handler)

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
    type = _dataconnection.DataConnection.type
    label = Forward()
    serialization = Forward()
    reliable = Forward()
    max_message_bytes = Forward()
    received_bytes_held = Forward()
    buffered_amount = Forward()
    buffer_size = Forward()
    path_loss_bound = Forward()
    remote_silence = Forward()

    def send(self, value: Any) -> None:
        """Send ``value``; blocks while the channel is over its high-water mark."""
        self._owner._call(self._conn.send, value)

    def recv(self, timeout: float | None = None) -> Any:
        """Return the next value; raise ``TimeoutError`` after ``timeout`` seconds."""
        return self._owner._call(within(timeout, self._conn.recv))

    def __iter__(self) -> Iterator[Any]:
        return repeat(self.recv, until=ConnectionClosedError)

    def close(self, *, flush: bool = False) -> None:
        """Close the connection (see :meth:`peerpy.DataConnection.close`)."""
        self._owner._call(lambda: self._conn.close(flush=flush))


class MediaStream(_mediaconnection.MediaStream):
    """A call's stream in :mod:`peerpy.sync`: the async stream's tracks, and their peer.

    It is a :class:`peerpy.MediaStream` (``audio``, ``video``, ``tracks``...)
    that also knows the blocking peer whose event loop reads its tracks, so
    :class:`FrameCounter` and :class:`Recorder` need nothing else.
    """

    def __init__(self, stream: _mediaconnection.MediaStream, owner: Peer) -> None:
        super().__init__(stream.id, stream.tracks)
        self._owner = owner


class MediaConnection(_Connection):
    """Blocking twin of :class:`peerpy.MediaConnection`."""

    _conn: _mediaconnection.MediaConnection
    type = _mediaconnection.MediaConnection.type
    answered = Forward()
    max_buffered_frames = Forward()

    def __init__(self, conn: _mediaconnection.MediaConnection, owner: Peer) -> None:
        super().__init__(conn, owner)
        self._streams: dict[int, MediaStream] = {}

    def _stream(self, stream: _mediaconnection.MediaStream) -> MediaStream:
        twin = self._streams.get(id(stream))
        if twin is None or twin.tracks != stream.tracks:
            twin = self._streams[id(stream)] = MediaStream(stream, self._owner)
        return twin

    @property
    def local_stream(self) -> MediaStream:
        """The tracks we send (see :attr:`peerpy.MediaConnection.local_stream`)."""
        return self._stream(self._conn.local_stream)

    @property
    def remote_stream(self) -> MediaStream | None:
        """The remote tracks, once known (see :attr:`peerpy.MediaConnection.remote_stream`)."""
        stream = self._conn.remote_stream
        return None if stream is None else self._stream(stream)

    def answer(self, tracks: Any = None, **options: Any) -> None:
        """Answer an incoming call (see :meth:`peerpy.MediaConnection.answer`)."""
        self._owner._call(lambda: self._conn.answer(tracks, **options))

    def wait_stream(self, timeout: float | None = None) -> MediaStream:
        """Block until the remote stream with all its tracks is known."""
        return self._stream(self._owner._call(within(timeout, self._conn.wait_stream)))

    def close(self) -> None:
        """Hang up."""
        self._owner._call(self._conn.close)


def _owner_of(tracks: Iterable[MediaStreamTrack], peer: Peer | None) -> Peer:
    """The blocking peer whose event loop reads ``tracks``."""
    owner = peer if peer is not None else getattr(tracks, "_owner", None)
    if owner is None:
        raise UsageError(
            "pass a stream of a blocking call (call.wait_stream(), call.remote_stream) "
            "or the peer: FrameCounter(tracks, peer=peer)"
        )
    return owner


class _OnLoop:
    """An async context manager of :mod:`peerpy.media` run on a peer's loop while in ``with``."""

    def __init__(self, owner: Peer, make: Callable[[], Any]) -> None:
        self._owner = owner
        self._target = owner._call_sync(make)  # built there: it makes anyio objects
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        self._stack.enter_context(self._owner._wrap_async_context(self._target))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.__exit__(*exc_info)


class FrameCounter(_OnLoop):
    """Blocking twin of :class:`peerpy.media.FrameCounter`: reads ``tracks`` while in ``with``.

    ``tracks`` is a stream of a blocking call (``call.wait_stream()``), else
    give its ``peer``.

    >>> with FrameCounter(call.wait_stream(timeout=10)) as counter:  # doctest: +SKIP
    ...     counter.wait(video=30, timeout=10)
    ...     frame = counter.last["video"]
    """

    _target: _media.FrameCounter

    def __init__(self, tracks: Iterable[MediaStreamTrack], *, peer: Peer | None = None) -> None:
        super().__init__(_owner_of(tracks, peer), lambda: _media.FrameCounter(tracks))

    @property
    def counts(self) -> dict[str, int]:
        """Frames read so far, by kind."""
        return dict(self._target.counts)

    @property
    def last(self) -> dict[str, Any]:
        """The last frame read, by kind (an ``av.VideoFrame`` or ``av.AudioFrame``)."""
        return dict(self._target.last)

    @property
    def ended(self) -> bool:
        """Whether every track ended."""
        return self._target.ended

    def wait(self, *, audio: int = 0, video: int = 0, timeout: float | None = None) -> None:
        """Block until at least ``audio`` and ``video`` frames were read.

        Raise ``TimeoutError`` after ``timeout`` seconds and
        :class:`ConnectionClosedError` if every track ends first.
        """
        counter = self._target
        self._owner._call(within(timeout, lambda: counter.wait(audio=audio, video=video)))


class Recorder(_OnLoop):
    """Blocking twin of :class:`peerpy.media.Recorder`: writes ``tracks`` while in ``with``.

    ``tracks`` is a stream of a blocking call, else give its ``peer``.
    Entering waits for the first video frame (as the async one does).
    """

    _target: _media.Recorder

    def __init__(
        self,
        path: str | os.PathLike[str],
        tracks: Iterable[MediaStreamTrack],
        *,
        peer: Peer | None = None,
        format: str | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            _owner_of(tracks, peer),
            lambda: _media.Recorder(path, tracks, format=format, options=options),
        )
        #: The file written.
        self.path = self._target.path
