"""The blocking twin of a room, for :mod:`peerpy.sync`: same names, no second implementation.

Each method runs the async :class:`peerpy.room.Room`'s on the peer's event loop
thread and waits for it; handlers run on the peer's dispatcher thread, one at a
time, so a handler may call blocking methods (``room.send`` in a ``data``
handler).

>>> from peerpy.sync import Peer                              # doctest: +SKIP
>>> with Peer("alice") as peer, peer.join("lobby", metadata={"name": "Alice"}) as room:
...     room.send("hello, everyone")
...     sender, data = room.recv(timeout=10)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamTrack

from .. import room as _room
from ..blocking import Forward, repeat, within
from ..exceptions import ConnectionClosedError

if TYPE_CHECKING:
    from ..sync import DataConnection, MediaConnection, Peer

__all__ = ["Room"]


class Room:
    """Blocking twin of :class:`peerpy.room.Room`: ``with peer.join(name) as room:``."""

    def __init__(self, room: _room.Room, owner: Peer) -> None:
        self._room = room
        self._owner = owner

    def __repr__(self) -> str:
        return repr(self._room).replace("<", "<sync ", 1)

    name = Forward("The room's name.", via="_room", settable=False)
    metadata = Forward("Our metadata, as the other members see it.", via="_room", settable=False)
    state = Forward("Where the room is in its life.", via="_room", settable=False)
    joined = Forward("Whether we are a member now.", via="_room", settable=False)

    @property
    def members(self) -> Mapping[str, Any]:
        """The other members' ids and metadata, as they are now (read-only)."""
        return MappingProxyType(self._owner._call_sync(lambda: dict(self._room.members)))

    @property
    def connections(self) -> dict[str, DataConnection]:
        """The open data connections, by member (blocking twins)."""
        conns = self._owner._call_sync(lambda: self._room.connections)
        return {member: self._owner._wrap(conn) for member, conn in conns.items()}

    def __enter__(self) -> Room:
        """Join; return once the broker's snapshot of the members is in :attr:`members`."""
        self._owner._call(self._room.__aenter__)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.leave()

    def leave(self) -> None:
        """Leave the room and close its connections."""
        self._owner._call(self._room.leave)

    def send(self, data: Any, *, to: str | Iterable[str] | None = None) -> None:
        """Send ``data`` to every other member, or to ``to`` (see :meth:`peerpy.room.Room.send`)."""
        self._owner._call(lambda: self._room.send(data, to=to))

    def recv(self, timeout: float | None = None) -> tuple[str, Any]:
        """Return the next ``(member, value)``; raise ``TimeoutError`` after ``timeout`` s."""
        return self._owner._call(within(timeout, self._room.recv))

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return repeat(self.recv, until=ConnectionClosedError)

    def call(self, tracks: Iterable[MediaStreamTrack]) -> dict[str, MediaConnection]:
        """Send ``tracks`` to every member (see :meth:`peerpy.room.Room.call`)."""
        calls = self._owner._call(lambda: self._room.call(tracks))
        return {member: self._owner._wrap(call) for member, call in calls.items()}

    def on(self, event: _room.RoomEvent, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` on the peer's dispatcher thread each time ``event`` happens.

        A first ``data`` handler also gets the values received before it and
        not read, in order, before any later one.
        """
        self._owner._on(self._room, event, handler)
        return handler

    def off(self, event: _room.RoomEvent, handler: Callable[..., Any]) -> None:
        """Stop calling ``handler`` for ``event``."""
        self._owner._off(self._room, event, handler)
