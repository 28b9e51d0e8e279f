"""The mesh of one room: a data connection with each member, opened by one side.

:class:`Mesh` keeps one :class:`Link` per member.  The member with the
lexically smaller id opens the connection (:func:`~peerpy.rooms.membership.offers`),
retrying with backoff while the other stays a member; the other side waits for
it and adopts it when it arrives.  Should both sides ever open one (a client
that does not follow the rule), both keep the one opened by the smaller id and
close the other, so each member sends on exactly one connection and nothing
arrives twice.

Each open connection has a reader task that hands every value, in order, to
the room (``deliver(member, value)``, which may wait: that is the
backpressure), and reports when the connection ends (``lost(member, error)``):
an open connection that dies means the member is gone for us (crashed, frozen,
cut off: ``Timeouts.remote_gone``), whether or not the broker said so yet.

Room connections never resume on a new peer connection (see :func:`resumable`):
a dead one means the member is gone for us.  They are marked so they never
reach ``Peer.accept()``: their
metadata is ``{"peerpy-room": NAME}`` (:func:`room_metadata`), which PeerJS's
``peer.connect(id, {metadata})`` and ``peer.call(id, stream, {metadata})``
can send too; the channel label is ``peerpy-room:NAME``, for people reading
``chrome://webrtc-internals``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import anyio
import attrs

from ..backoff import backoff_delays
from ..config import Limits, Timeouts
from ..dataconnection import DataConnection
from ..exceptions import ConnectionClosedError, PeerError
from ..mediaconnection import MediaConnection
from .membership import offers

__all__ = ["ROOM_KEY", "Link", "Mesh", "MeshHost", "resumable", "room_metadata", "room_of"]

#: The metadata key marking a connection as a room's.
ROOM_KEY = "peerpy-room"
#: Data channel label prefix of room connections (the room name follows).
LABEL_PREFIX = "peerpy-room:"


def room_metadata(name: str) -> dict[str, str]:
    """The metadata of a connection belonging to room ``name``."""
    return {ROOM_KEY: name}


def room_of(metadata: Any) -> str | None:
    """The room a connection's metadata names, or ``None`` for an ordinary connection."""
    if isinstance(metadata, dict):
        name = metadata.get(ROOM_KEY)
        if isinstance(name, str):
            return name
    return None


def resumable(metadata: Any) -> bool:
    """Whether a data connection with ``metadata`` may offer resumption: not a room's.

    A room must see a frozen or cut-off member leave within
    ``Timeouts.remote_gone``, and a resumable connection hides such a member
    for up to ``Timeouts.resume`` (it cannot tell a frozen remote from a lost
    path).  Rooms recover by themselves instead: who is a member is the
    broker's word, and a member seen leaving that joins again (as
    ``auto_reconnect`` does after a network change) gets a new connection.
    """
    return room_of(metadata) is None


class MeshHost(Protocol):
    """What a room's mesh needs from its :class:`~peerpy.peer.Peer`."""

    @property
    def timeouts(self) -> Timeouts: ...
    @property
    def limits(self) -> Limits: ...
    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None: ...
    async def connect(
        self, peer: str, *, label: str, metadata: Any, serialization: str, reliable: bool
    ) -> DataConnection: ...
    async def call(
        self, peer: str, tracks: Any = None, *, metadata: Any = None
    ) -> MediaConnection: ...


#: Hands one received value to the room; may wait (backpressure).
Deliver = Callable[[str, Any], Awaitable[None]]
#: Told that the open connection with a member ended, and why (``None``: closed cleanly).
Lost = Callable[[str, "PeerError | None"], None]


class Link:
    """Our one data connection with one member, once there is one."""

    def __init__(self, member: str) -> None:
        self.member = member
        #: The connection we send on (``None`` until one opened).
        self.conn: DataConnection | None = None
        #: Set once the member is no longer in the room (for us).
        self.dropped = False
        self._changed = anyio.Event()

    def __repr__(self) -> str:
        return f"<Link {self.member!r} {self.conn!r}>"

    @property
    def ready(self) -> DataConnection | None:
        """The open connection, if there is one now."""
        conn = self.conn
        return conn if conn is not None and conn.open else None

    def _touch(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self) -> DataConnection | None:
        """The open connection once there is one; ``None`` if the member goes first.

        Cancelling stops waiting.
        """
        while not self.dropped:
            conn = self.ready
            if conn is not None:
                return conn
            await self._changed.wait()
        return None


@attrs.define(eq=False)
class Mesh:
    """The data connections of one room (see the module docstring).

    Made as ``Mesh(host, room, me, deliver=..., lost=..., logger=...)``.
    """

    _host: MeshHost
    _room: str
    _me: str
    _deliver: Deliver = attrs.field(kw_only=True)
    _lost: Lost = attrs.field(kw_only=True)
    _log: logging.Logger = attrs.field(kw_only=True, alias="logger")
    _links: dict[str, Link] = attrs.field(init=False, factory=dict)
    _closed: bool = attrs.field(init=False, default=False)

    def link(self, member: str) -> Link | None:
        """The link with ``member``, if it is a member."""
        return self._links.get(member)

    @property
    def connections(self) -> dict[str, DataConnection]:
        """The open connections, by member."""
        return {m: conn for m, link in self._links.items() if (conn := link.ready) is not None}

    def add(self, member: str) -> None:
        """``member`` joined: open the connection if it is ours to open."""
        if self._closed or member in self._links:
            return
        link = self._links[member] = Link(member)
        if offers(self._me, member):
            self._host._spawn(lambda: self._dial(link))

    def drop(self, member: str) -> None:
        """``member`` left: close its connection (in the background)."""
        link = self._links.pop(member, None)
        if link is None:
            return
        link.dropped = True
        link._touch()
        conn, link.conn = link.conn, None
        if conn is not None:
            self._host._spawn(conn._close)

    def adopt(self, conn: DataConnection) -> None:
        """Take an open incoming connection from a member (see the module docstring)."""
        link = self._links.get(conn.peer)
        if link is None or self._closed:
            self._host._spawn(conn._close)
            return
        current = link.ready
        if current is not None and current.originator and offers(self._me, conn.peer):
            # Both opened one: ours, from the smaller id, is the one both keep.
            self._log.debug("room %s: keeping our connection to %s", self._room, conn.peer)
            self._host._spawn(conn._close)
            return
        self._attach(link, conn)

    def abandon(self) -> None:
        """Stop reporting: the connections are closing with the peer."""
        self._closed = True

    async def close(self) -> None:
        """Close every connection and wait until they are closed.  Not cancellable."""
        self._closed = True
        links, self._links = list(self._links.values()), {}
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for link in links:
                    link.dropped = True
                    link._touch()
                    if link.conn is not None:
                        tg.start_soon(link.conn._close)

    # -- inside -------------------------------------------------------------

    def _attach(self, link: Link, conn: DataConnection) -> None:
        old, link.conn = link.conn, conn
        link._touch()
        if old is not None and old is not conn:
            self._host._spawn(old._close)
        self._host._spawn(lambda: self._read(link, conn))

    async def _dial(self, link: Link) -> None:
        """Open the connection to ``link.member``; retry while it stays a member.

        Cancelled only with the peer.
        """
        delays = backoff_delays(
            self._host.timeouts.reconnect_initial, self._host.timeouts.reconnect_max
        )
        while not link.dropped and link.ready is None:
            try:
                conn = await self._host.connect(
                    link.member,
                    label=LABEL_PREFIX + self._room,
                    metadata=room_metadata(self._room),
                    serialization="binary",
                    reliable=True,
                )
            except PeerError as exc:
                if link.dropped:
                    return
                self._log.info(
                    "room %s: no connection to %s yet (will retry): %s",
                    *(self._room, link.member, exc),
                )
                await anyio.sleep(next(delays))
                continue
            if link.dropped:
                await conn._close()
                return
            self._attach(link, conn)
            return

    async def _read(self, link: Link, conn: DataConnection) -> None:
        """Hand what ``conn`` receives to the room; report its end.  Cancelled with the peer."""
        try:
            while True:
                value = await conn.recv()
                await self._deliver(link.member, value)
        except ConnectionClosedError:
            pass
        finally:
            if link.conn is conn and not link.dropped and not self._closed:
                # The one connection with this member died under us.
                link.conn = None
                link._touch()
                self._lost(link.member, conn.error)
