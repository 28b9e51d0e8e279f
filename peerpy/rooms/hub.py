"""The rooms of one peer: their frames on the broker socket, their incoming connections.

:class:`Rooms` is what a :class:`~peerpy.peer.Peer` holds for rooms, and all
it delegates to:

- :meth:`Rooms.join` checks the name and metadata (the broker's rules, from
  :mod:`peerpy_protocol.rooms`) before anything is sent, and makes the
  :class:`~peerpy.room.Room`; entering it registers it here and sends
  ``ROOM-JOIN``, at once refused with
  :class:`~peerpy.exceptions.RoomsUnsupportedError` when the broker's OPEN did
  not offer the ``rooms`` extension (PeerJS's ``peer``, an older broker);
- :meth:`Rooms.on_frame` takes every ``ROOM-*`` frame the broker sends and
  gives it to its room (a snapshot, a notice, a refusal);
- :meth:`Rooms.wants` and :meth:`Rooms.take` (the
  :class:`~peerpy.incoming.Claims` of the peer's incoming side) keep room
  connections from ``Peer.accept()``: an OFFER for a room we are not in is
  refused before any peer connection is made, and the others go to their room;
- after a lost broker session, once registered again, every room is joined
  again, and the broker's new snapshot tells who left or came meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from peerpy_protocol import rooms as wire
from peerpy_protocol.messages import Unknown
from peerpy_protocol.payloads import OfferPayload

from ..connection import Connection
from ..dataconnection import DataConnection
from ..exceptions import (
    DisconnectedError,
    InvalidMetadataError,
    InvalidRoomError,
    NetworkError,
    PeerError,
    ProtocolError,
    RoomError,
    RoomForbiddenError,
    RoomFullError,
    RoomLimitError,
    RoomRateLimitedError,
    RoomsUnsupportedError,
    UsageError,
)
from ..mediaconnection import MediaConnection
from ..room import Room, RoomState
from ..signaling import Signaling
from .membership import Joined, Left
from .mesh import MeshHost, room_of
from .sfu import SfuHost

__all__ = ["RoomHost", "Rooms", "room_error"]

#: The exception for each ROOM-ERROR ``type`` (each class carries its own).
_ERRORS: dict[str, type[PeerError]] = {
    kind.type: kind
    for kind in (
        RoomFullError,
        InvalidRoomError,
        InvalidMetadataError,
        RoomForbiddenError,
        RoomLimitError,
        RoomRateLimitedError,
    )
}

NO_ROOMS = "this broker has no rooms (PeerJS's peer server, or an older peerpy-server)"


def room_error(error: wire.RoomError) -> PeerError:
    """The exception for a broker's ``ROOM-ERROR`` (:class:`RoomError` for an unknown type)."""
    kind = _ERRORS.get(error.type, RoomError)
    return kind(f"cannot join room {error.room!r}: {error.msg or error.type}")


class RoomHost(MeshHost, SfuHost, Protocol):
    """What the rooms need from their :class:`~peerpy.peer.Peer`."""

    _signaling: Signaling

    @property
    def open(self) -> bool: ...
    @property
    def destroyed(self) -> bool: ...
    def on(self, event: Any, handler: Callable[..., Any]) -> Any: ...


class Rooms:
    """The rooms of one peer (see the module docstring)."""

    def __init__(self, host: RoomHost, logger: logging.Logger) -> None:
        #: The peer.
        self.host = host
        self._log = logger
        self._rooms: dict[str, Room] = {}
        host.on("open", self._registered)

    @property
    def me(self) -> str:
        """Our peer id."""
        me = self.host.id
        if me is None:
            raise UsageError("the Peer is not started: use `async with Peer(...)` first")
        return me

    def join(self, name: str, metadata: Any = None) -> Room:
        """A room to enter with ``async with`` (see :meth:`peerpy.Peer.join`)."""
        wire.validate_room_name(name)
        wire.validate_metadata(metadata)
        if self.host.destroyed:
            raise DisconnectedError("The peer is destroyed.")
        return Room(self, name, metadata, self._log)

    @property
    def rooms(self) -> dict[str, Room]:
        """The rooms we are in or joining, by name."""
        return dict(self._rooms)

    # -- used by the rooms --------------------------------------------------

    def register(self, room: Room) -> None:
        """Make ``room`` the one named so; raise if we cannot join it now."""
        if self.host.destroyed:
            raise DisconnectedError("The peer is destroyed.")
        signaling = self.host._signaling
        if not self.host.open:
            raise DisconnectedError(f"not connected to the broker: cannot join {room.name!r}")
        if wire.ROOMS_EXT not in signaling.extensions:
            raise RoomsUnsupportedError(f"cannot join room {room.name!r}: {NO_ROOMS}")
        if room.name in self._rooms:
            raise UsageError(f"already in room {room.name!r}")
        signaling.on_extension = self.on_frame  # from now on, ROOM-* frames come here
        self._rooms[room.name] = room

    def forget(self, room: Room) -> None:
        """``room`` is left."""
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]

    async def send_join(self, room: Room) -> None:
        """Send ``ROOM-JOIN``.  Cancelling may leave it unsent."""
        frame = wire.serialize(wire.RoomJoin(room.name, room.metadata))
        await self.host._signaling.send_frame(frame, f"ROOM-JOIN of {room.name}")

    async def send_leave(self, room: Room) -> None:
        """Send ``ROOM-LEAVE`` if the broker still counts us in.  Never raises."""
        if not self.host.open:
            return  # the broker forgot us with our session
        frame = wire.serialize(wire.RoomLeave(room.name))
        try:
            await self.host._signaling.send_frame(frame, f"ROOM-LEAVE of {room.name}")
        except PeerError as exc:
            self._log.info("could not send ROOM-LEAVE of %s: %s", room.name, exc)

    def no_answer(self, room: Room) -> NetworkError:
        """The error of a join the broker did not answer in time."""
        limit = self.host.timeouts.open
        return NetworkError(f"the broker did not answer joining room {room.name!r} in {limit:g} s")

    # -- from the broker ----------------------------------------------------

    def on_frame(self, message: Unknown) -> None:
        """Give one ``ROOM-*`` frame to its room (others are logged and dropped)."""
        if message.type not in wire.ROOM_TYPES or not isinstance(message.raw, dict):
            self._log.info("ignoring %s from the broker", message.type)
            return
        try:
            frame = wire.from_envelope(message.raw)
        except ProtocolError as exc:
            self._log.warning("ignoring a bad %s from the broker: %s", message.type, exc)
            return
        room = self._rooms.get(frame.room)
        if room is None:
            self._log.debug("ignoring %s for room %r: not in it", message.type, frame.room)
            return
        if isinstance(frame, wire.RoomMembers):
            room._answer(frame.members)
            if frame.media == "sfu":
                room._use_sfu(frame.sfu)
        elif isinstance(frame, wire.RoomSfu):
            room._use_sfu(frame.sfu, frame.msg)
        elif isinstance(frame, wire.RoomError):
            room._refused(room_error(frame))
        elif frame.src is None:
            self._log.warning("ignoring %s without src", message.type)
        elif isinstance(frame, wire.RoomJoin):
            room._notice(Joined(frame.src, frame.metadata))
        else:
            room._notice(Left(frame.src))

    def _registered(self, peer_id: str) -> None:
        """Registered again after a lost session: join every room again."""
        for room in list(self._rooms.values()):
            if room.state is RoomState.JOINED:
                self._spawn_rejoin(room)

    def _spawn_rejoin(self, room: Room) -> None:
        if wire.ROOMS_EXT in self.host._signaling.extensions:
            self.host._spawn(lambda: self._rejoin(room))
            return
        error = RoomsUnsupportedError(f"lost room {room.name!r}: {NO_ROOMS}")
        self.host._spawn(lambda: room._close(send_leave=False, error=error))

    async def _rejoin(self, room: Room) -> None:
        try:
            await self.send_join(room)
        except PeerError as exc:
            self._log.warning("could not join room %s again: %s", room.name, exc)

    # -- incoming connections (peerpy.incoming.Claims) -----------------------

    def wants(self, src: str, offer: OfferPayload) -> bool | None:
        """Whether to build the connection an OFFER asks for: ``None`` if not a room's."""
        name = room_of(offer.metadata)
        if name is None:
            return None
        room = self._rooms.get(name)
        wanted = room is not None and room.state in (RoomState.JOINING, RoomState.JOINED)
        if not wanted:
            self._log.info("refusing %s from %s: not in room %r", offer.connection_id, src, name)
        return wanted

    def take(self, conn: Connection) -> bool:
        """Give a room's incoming connection to its room; ``False`` if it is not a room's."""
        name = room_of(conn.metadata)
        if name is None or not isinstance(conn, (DataConnection, MediaConnection)):
            return False
        room = self._rooms.get(name)
        if room is None or room.state is RoomState.LEFT:
            self.host._spawn(conn._close)
        else:
            room._take(conn)
        return True

    def close(self) -> None:
        """The peer is being destroyed: every room ends (its connections close with the peer)."""
        for room in list(self._rooms.values()):
            room._abandon(DisconnectedError("The peer is destroyed."))
        self._rooms.clear()
