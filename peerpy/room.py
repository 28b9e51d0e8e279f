"""Room: a named group of peers that see each other and broadcast to each other.

>>> async with Peer("alice") as peer:                             # doctest: +SKIP
...     async with peer.join("lobby", metadata={"name": "Alice"}) as room:
...         await room.send("hello, everyone")
...         sender, data = await room.recv()

Membership lives in the broker (the ``rooms`` extension, see
:mod:`peerpy_protocol.rooms`): ``async with peer.join(...)`` sends
``ROOM-JOIN`` and returns once the broker's ``ROOM-MEMBERS`` snapshot is in
:attr:`Room.members`; from then on the broker's notices keep it current.  The
data goes peer to peer, over a mesh of data connections (:mod:`peerpy.rooms.mesh`)
that open in the background: sending to a member whose connection is not open
yet waits for it, up to ``Timeouts.negotiation``.  Each connection is ordered
and reliable, so what one member sends arrives in order, once; the sender of
each value is the member at the other end of its connection (authenticated by
DTLS, its id forced by the broker), never a field of the data.

A member is seen leaving when the broker says so (it left, closed its socket,
its broker died) or when its connection with us dies (a crash shows within
``Timeouts.remote_gone``, 8 s by default), whichever comes first.  Leaving the
``async with`` block leaves the room and closes its connections.

Media (:meth:`Room.call`) is a mesh too: see :mod:`peerpy.rooms.calls` for its
cost.  Events (:meth:`Room.on`): ``join(member, metadata)``, ``leave(member)``,
``data(member, value)``, ``stream(member, MediaStream)``.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, overload

import anyio
from aiortc import MediaStreamTrack

from .dataconnection import DataConnection
from .events import EventEmitter
from .exceptions import (
    ConnectionClosedError,
    NegotiationFailedError,
    NotOpenError,
    PeerError,
    UsageError,
)
from .mailbox import Mailbox, MailboxClosed
from .mediaconnection import MediaConnection, MediaStream
from .rooms.calls import Calls
from .rooms.membership import Joined, Left, MemberEvent, Membership
from .rooms.mesh import Mesh
from .rooms.sfu import SfuCalls

if TYPE_CHECKING:
    from peerpy_protocol.janus import SfuInfo

    from .rooms.hub import Rooms

__all__ = ["ROOM_EVENTS", "Room", "RoomEvent", "RoomState"]

RoomEvent = Literal["join", "leave", "data", "stream"]
ROOM_EVENTS: tuple[str, ...] = ("join", "leave", "data", "stream")
#: Values received and not read yet (beyond this, readers slow the senders down).
INBOX_SIZE = 1024


class RoomState(enum.Enum):
    """Where a room is in its life (it never goes back)."""

    NEW = "new"
    JOINING = "joining"
    JOINED = "joined"
    LEFT = "left"


class Room:
    """A room this peer joins: get one from :meth:`Peer.join() <peerpy.Peer.join>`.

    Use it as ``async with peer.join(name, metadata=...) as room``; see the
    module docstring for what it guarantees.
    """

    def __init__(self, hub: Rooms, name: str, metadata: Any, logger: logging.Logger) -> None:
        #: The room's name.
        self.name = name
        #: Our metadata, as the other members see it.
        self.metadata = metadata
        self._hub = hub
        host = hub.host
        self._log = logger
        self._state = RoomState.NEW
        self._error: PeerError | None = None
        self._answered = anyio.Event()  # the broker's ROOM-MEMBERS or ROOM-ERROR
        self._membership = Membership(hub.me)
        self._members = MappingProxyType(self._membership.members)
        self._events = EventEmitter(ROOM_EVENTS, host._spawn, logger)
        self._inbox: Mailbox[tuple[str, Any]] = Mailbox()
        self._read = anyio.Event()  # set (and renewed) whenever recv() takes a value
        self._mesh = Mesh(
            host, name, hub.me, deliver=self._deliver, lost=self._link_lost, logger=logger
        )
        self._calls: Calls | SfuCalls = Calls(host, name, on_stream=self._stream, logger=logger)
        self._changed = anyio.Event()  # members changed (see _await_member)

    def __repr__(self) -> str:
        return f"<Room {self.name!r} {self._state.value}, {len(self._members)} other members>"

    # -- state --------------------------------------------------------------

    @property
    def members(self) -> Mapping[str, Any]:
        """The other members' ids and metadata: a live, read-only mapping."""
        return self._members

    @property
    def state(self) -> RoomState:
        """Where the room is in its life."""
        return self._state

    @property
    def joined(self) -> bool:
        """Whether we are a member now."""
        return self._state is RoomState.JOINED

    @property
    def connections(self) -> dict[str, DataConnection]:
        """The open data connections, by member (members still connecting are left out)."""
        return self._mesh.connections

    # -- life cycle ---------------------------------------------------------

    async def __aenter__(self) -> Room:
        """Join: return once the broker's snapshot of the members is in :attr:`members`.

        Raise :class:`~peerpy.exceptions.RoomsUnsupportedError` at once if the
        broker has no rooms, :class:`~peerpy.exceptions.RoomFullError` and the
        other :class:`~peerpy.exceptions.RoomError` s if it refuses,
        :class:`~peerpy.exceptions.NetworkError` if it does not answer within
        ``Timeouts.open``.  Cancelling leaves the room.
        """
        if self._state is not RoomState.NEW:
            raise UsageError(f"room {self.name!r} was already joined: call peer.join() again")
        self._hub.register(self)
        self._state = RoomState.JOINING
        try:
            await self._hub.send_join(self)
            with anyio.move_on_after(self._hub.host.timeouts.open):
                await self._answered.wait()
            if self._error is not None:
                raise self._error
            if not self._answered.is_set():
                raise self._hub.no_answer(self)
        except BaseException:
            await self._close(send_leave=self._error is None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.leave()

    async def leave(self) -> None:
        """Leave the room and close its connections (also what leaving ``async with`` does).

        Values received and not read stay readable.  Not cancellable.
        """
        await self._close(send_leave=True)

    async def _close(self, *, send_leave: bool, error: PeerError | None = None) -> None:
        if not self._end(error):
            return
        self._hub.forget(self)
        with anyio.CancelScope(shield=True):
            if send_leave:
                await self._hub.send_leave(self)
            await self._mesh.close()
            await self._calls.close()

    def _abandon(self, error: PeerError) -> None:
        """The peer is destroyed: end now; its connections close with the peer."""
        if self._end(error):
            self._mesh.abandon()

    def _end(self, error: PeerError | None) -> bool:
        """Go to LEFT: wake every waiter, forget the members; ``False`` if already there."""
        if self._state is RoomState.LEFT:
            return False
        self._state = RoomState.LEFT
        self._error = self._error or error
        self._answered.set()
        self._touch()
        self._membership.clear()
        self._inbox.close()
        self._read.set()
        return True

    # -- events -------------------------------------------------------------

    @overload
    def on(self, event: Literal["join"], handler: Callable[[str, Any], Any]) -> Any: ...
    @overload
    def on(self, event: Literal["leave"], handler: Callable[[str], Any]) -> Any: ...
    @overload
    def on(self, event: Literal["data"], handler: Callable[[str, Any], Any]) -> Any: ...
    @overload
    def on(self, event: Literal["stream"], handler: Callable[[str, MediaStream], Any]) -> Any: ...
    def on(self, event: RoomEvent, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` each time ``event`` happens: join, leave, data, stream.

        ``join(member, metadata)`` also fires when a member joins again with new
        metadata.  With a ``data(member, value)`` handler values go to it
        instead of :meth:`recv`; the first one is given at once, in order, the
        values that arrived before it and were not read.
        """
        first = event == "data" and not self._events.has("data")
        self._events.on(event, handler)
        if first:
            self._drain()
        return handler

    def off(self, event: RoomEvent, handler: Callable[..., Any]) -> None:
        """Remove an event handler."""
        self._events.off(event, handler)

    # -- data ---------------------------------------------------------------

    async def send(self, data: Any, *, to: str | Iterable[str] | None = None) -> None:
        """Send ``data`` to every other member, or to the member(s) ``to``.

        A member whose connection is not open yet is waited for, up to
        ``Timeouts.negotiation``; a member that leaves meanwhile is skipped
        (unless named in ``to``).  Raise :class:`UsageError` if ``to`` names a
        non-member, :class:`NotOpenError` if we are not in the room,
        :class:`NegotiationFailedError` naming the members not reached in time
        (after the others got ``data``), :class:`ConnectionClosedError` if a
        member named in ``to`` left first, and what
        :meth:`DataConnection.send` raises for a value it cannot send.
        Cancelling may leave ``data`` sent to some members only.
        """
        if self._state is not RoomState.JOINED:
            raise NotOpenError(f"not in room {self.name!r} ({self._state.value})")
        named = to is not None
        targets = self._targets(to)
        waiting: list[str] = []
        gone: list[str] = []
        for member in targets:
            link = self._mesh.link(member)
            conn = link.ready if link is not None else None
            if conn is None:
                waiting.append(member)
            elif not await self._send_on(conn, data):
                gone.append(member)
        late: list[str] = []
        if waiting:
            limit = self._hub.host.timeouts.negotiation
            async with anyio.create_task_group() as tg:
                for member in waiting:
                    tg.start_soon(self._send_when_open, member, data, limit, late, gone)
            if late:
                raise NegotiationFailedError(
                    f"room {self.name!r}: no connection to {', '.join(late)} within "
                    f"{limit:g} s (the other members got the message)"
                )
        if named and gone:
            raise ConnectionClosedError(f"{', '.join(gone)} left room {self.name!r}")

    def _targets(self, to: str | Iterable[str] | None) -> list[str]:
        if to is None:
            return list(self._membership)
        targets = [to] if isinstance(to, str) else list(to)
        strangers = [member for member in targets if member not in self._membership]
        if strangers:
            raise UsageError(f"not members of room {self.name!r}: {', '.join(strangers)}")
        return list(dict.fromkeys(targets))

    async def _send_on(self, conn: DataConnection, data: Any) -> bool:
        """Send on one member's connection; tell whether it was still open."""
        try:
            await conn.send(data)
        except (NotOpenError, ConnectionClosedError):
            return False
        return True

    async def _send_when_open(
        self, member: str, data: Any, limit: float, late: list[str], gone: list[str]
    ) -> None:
        link = self._mesh.link(member)
        conn = None
        if link is not None:
            with anyio.move_on_after(limit) as scope:
                conn = await link.wait()
            if scope.cancelled_caught:
                late.append(member)
                return
        if conn is None or not await self._send_on(conn, data):
            gone.append(member)

    async def recv(self) -> tuple[str, Any]:
        """Return the next ``(member, value)`` received, in order per member.

        Raise :class:`ConnectionClosedError` once we left the room and every
        received value was read.  Cancelling loses nothing.
        """
        try:
            item = await self._inbox.get()
        except MailboxClosed:
            raise self._closed_error() from None
        self._read.set()
        self._read = anyio.Event()
        return item

    def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[str, Any]]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedError:
                return

    def _closed_error(self) -> PeerError:
        if self._error is not None:
            return ConnectionClosedError(f"room {self.name!r} closed: {self._error}")
        return ConnectionClosedError(f"left room {self.name!r}")

    async def _deliver(self, member: str, value: Any) -> None:
        """A member's value, from its connection's reader (waits while the inbox is full)."""
        while len(self._inbox) >= INBOX_SIZE and not self._events.has("data"):
            if self._inbox.closed:
                return
            await self._read.wait()
        if self._events.has("data"):
            self._drain()
            self._events.emit("data", member, value)
            return
        with contextlib.suppress(MailboxClosed):  # we left: nobody reads any more
            self._inbox.put_nowait((member, value))

    def _drain(self) -> None:
        for member, value in self._inbox.drain():
            self._events.emit("data", member, value)
        self._read.set()
        self._read = anyio.Event()

    # -- media --------------------------------------------------------------

    async def call(self, tracks: Iterable[MediaStreamTrack]) -> dict[str, MediaConnection]:
        """Send ``tracks`` (a :class:`MediaStream` or aiortc tracks) to every member.

        Members who join later are called too; each member's own call reaches
        us as a ``stream(member, MediaStream)`` event.  Return the calls that
        connected, by member (a call that fails is logged).  Cancelling stops
        waiting; the calls go on.
        """
        if self._state is not RoomState.JOINED:
            raise NotOpenError(f"not in room {self.name!r} ({self._state.value})")
        return await self._calls.start(tracks, list(self._membership))

    def _use_sfu(self, info: SfuInfo | None, why: str = "") -> None:
        """The broker's word that this room's media goes through an SFU (see rooms/sfu.py)."""
        if self._state is RoomState.LEFT:
            return
        if isinstance(self._calls, Calls):
            mesh, self._calls = (
                self._calls,
                SfuCalls(self._hub.host, self.name, on_stream=self._stream, logger=self._log),
            )
            self._hub.host._spawn(mesh.close)
        self._calls.use(info, why)

    def _stream(self, member: str, stream: MediaStream) -> None:
        if member in self._membership:
            self._events.emit("stream", member, stream)

    # -- from the hub and the mesh ------------------------------------------

    def _touch(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _answer(self, members: Mapping[str, Any]) -> None:
        """The broker's ``ROOM-MEMBERS``: the snapshot (first join, or joined again)."""
        if self._state is RoomState.LEFT:
            return
        events = self._membership.snapshot(members)
        if self._state is RoomState.JOINING:
            self._state = RoomState.JOINED
            self._answered.set()
        self._apply(events)

    def _refused(self, error: PeerError) -> None:
        """The broker's ``ROOM-ERROR``: refused while joining, or when joining again."""
        if self._state is RoomState.JOINING:
            self._error = error
            self._answered.set()
        elif self._state is RoomState.JOINED:
            self._log.warning("room %s: the broker refused to keep us: %s", self.name, error)
            self._hub.host._spawn(lambda: self._close(send_leave=False, error=error))

    def _notice(self, event: MemberEvent) -> None:
        """A broker notice: someone joined (or has new metadata), or left."""
        if self._state in (RoomState.JOINING, RoomState.JOINED):
            self._apply(self._membership.apply(event))

    def _link_lost(self, member: str, error: PeerError | None) -> None:
        """The open connection with ``member`` died: it is gone, for us."""
        self._log.info("room %s: lost %s (%s)", self.name, member, error or "closed")
        if self._state is RoomState.JOINED:
            self._apply(self._membership.left(member))

    def _apply(self, events: list[MemberEvent]) -> None:
        for event in events:
            if isinstance(event, Joined):
                if event.new:
                    self._mesh.add(event.member)
                    self._calls.add(event.member)
                self._events.emit("join", event.member, event.metadata)
            elif isinstance(event, Left):
                self._mesh.drop(event.member)
                self._calls.drop(event.member)
                self._events.emit("leave", event.member)
        if events:
            self._touch()

    def _take(self, conn: DataConnection | MediaConnection) -> None:
        """An incoming room connection, open (data) or ringing (media)."""
        if conn.peer in self._membership:
            self._adopt(conn)
        else:  # its OFFER outran the broker's ROOM-JOIN: give the notice a moment
            self._hub.host._spawn(lambda: self._await_member(conn))

    def _adopt(self, conn: DataConnection | MediaConnection) -> None:
        if isinstance(conn, DataConnection):
            self._mesh.adopt(conn)
        else:
            self._calls.take(conn)

    async def _await_member(self, conn: DataConnection | MediaConnection) -> None:
        """Adopt ``conn`` once its peer is a member; close it after ``Timeouts.half_open``."""
        with anyio.move_on_after(self._hub.host.timeouts.half_open):
            while self._state is not RoomState.LEFT:
                if conn.peer in self._membership:
                    self._adopt(conn)
                    return
                await self._changed.wait()
        self._log.info("room %s: closing a connection from non-member %s", self.name, conn.peer)
        await conn._close()
