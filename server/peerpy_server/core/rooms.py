"""Rooms in the broker: who joined which room, the checks, the snapshots and notices.

The wire messages are :mod:`peerpy_protocol.rooms`'s.  Two layers, both sans-I/O
(no clock: ``now`` is passed in; no sockets: frames go out through ``send``):

* :class:`Rooms`, the front the realm hands ``ROOM-JOIN`` and ``ROOM-LEAVE``
  frames to (:meth:`Rooms.receive`) and tells when a client is gone for any
  reason (:meth:`Rooms.drop`).  It applies, in this order, the rate limit
  (a token bucket per client: ``room_rate`` per second, ``room_burst`` at once;
  ``rate-limited``), the name rule (``invalid-room``), the metadata bound
  (``invalid-metadata``), the JWT ``rooms`` claim (``room-forbidden``) and the
  per-client bound (``room-limit``); then asks the directory.  It knows which
  rooms each local client is in (joined or being joined), so a dropped client
  leaves all of them.
* a :class:`Directory`, which holds the members: :class:`LocalDirectory` (in
  memory) here, or in cluster mode :class:`peerpy_server.cluster.rooms.RedisDirectory`
  (rooms span the brokers on one Redis).  It applies the bounds that need
  every member: ``room_max_members`` (``room-full``) and ``max_rooms``
  (``room-limit``), and answers through callbacks (at once here, after a
  Redis round trip in cluster mode).

On a join the joiner gets ``ROOM-MEMBERS`` (the *other* members) and each other
member ``ROOM-JOIN`` with ``src``; with an :class:`Sfu` (``--janus``) the
joiner's ``ROOM-MEMBERS`` waits for :meth:`Sfu.admit` and carries its ``sfu``
(followed by a ``ROOM-SFU`` saying why when it has none), and every leave is
told to :meth:`Sfu.left`; on a leave the remaining members get
``ROOM-LEAVE`` with ``src``.  A refusal is a ``ROOM-ERROR`` to the joiner,
counted in :attr:`Stats.room_refused <peerpy_server.core.stats.Stats>` and
logged at most once per ``warning_interval`` per reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import attrs
from peerpy_protocol.exceptions import PeerError, ProtocolError
from peerpy_protocol.rooms import (
    RoomError,
    RoomErrorType,
    RoomJoin,
    RoomLeave,
    RoomMembers,
    RoomSfu,
    from_envelope,
    serialize,
    validate_metadata,
    validate_room_name,
)

from ..config import BrokerConfig

if TYPE_CHECKING:
    from peerpy_protocol.janus import SfuInfo
from ..logs import WarningLimiter
from .realm import Client, truncate
from .stats import Stats

__all__ = ["Directory", "Joined", "LocalDirectory", "Rooms"]

logger: Final = logging.getLogger("peerpy_server.rooms")

JSON = Any
V = TypeVar("V")
#: What :meth:`Directory.join` answers: the other members' metadata, or why not.
Joined = Callable[[dict[str, JSON] | RoomErrorType], None]


def _remove(table: dict[str, dict[str, V]], key: str, item: str) -> dict[str, V] | None:
    """Take ``item`` out of ``table[key]``, and ``key`` out of ``table`` once empty.

    Return what ``table[key]`` holds after, or ``None`` if ``item`` was not there.
    """
    inner = table.get(key)
    if inner is None or item not in inner:
        return None
    del inner[item]
    if not inner:
        del table[key]
    return inner


class Directory(Protocol):
    """Where the members of every room are kept (in memory, or in Redis)."""

    def join(self, room: str, peer_id: str, metadata: JSON, done: Joined) -> None:
        """Add ``peer_id`` to ``room`` (or update its metadata); ``done(others or refusal)``."""

    def leave(self, room: str, peer_id: str, done: Callable[[list[str]], None]) -> None:
        """Remove ``peer_id`` from ``room``; ``done(remaining ids)`` if it was a member."""

    def members(self, room: str, answer: Callable[[list[str]], None]) -> None:
        """Call ``answer(ids)`` with the members of ``room`` (``[]`` if none)."""


class Sfu(Protocol):
    """What the rooms front needs from :class:`peerpy_server.sfu.Sfu`."""

    def admit(
        self, room: str, member: str, then: Callable[[SfuInfo | None, str], None]
    ) -> None: ...
    def left(self, room: str, member: str, empty: bool) -> None: ...


class LocalDirectory:
    """The members of every room of one broker, in memory.

    ``max_members`` (per room) and ``max_rooms`` (rooms with a member) are
    ``None`` when off.  Each callback is called before the method returns.
    """

    __slots__ = ("_max_members", "_max_rooms", "rooms")

    def __init__(self, max_members: int | None, max_rooms: int | None) -> None:
        self._max_members = max_members
        self._max_rooms = max_rooms
        #: Room name -> member id -> metadata (a room with no member is deleted).
        self.rooms: dict[str, dict[str, JSON]] = {}

    def join(self, room: str, peer_id: str, metadata: JSON, done: Joined) -> None:
        members = self.rooms.get(room)
        if members is None:
            if self._max_rooms is not None and len(self.rooms) >= self._max_rooms:
                done(RoomErrorType.ROOM_LIMIT)
                return
            members = self.rooms[room] = {}
        elif peer_id not in members and (
            self._max_members is not None and len(members) >= self._max_members
        ):
            done(RoomErrorType.ROOM_FULL)
            return
        members[peer_id] = metadata
        done({member: data for member, data in members.items() if member != peer_id})

    def leave(self, room: str, peer_id: str, done: Callable[[list[str]], None]) -> None:
        members = _remove(self.rooms, room, peer_id)
        if members is not None:
            done(list(members))

    def members(self, room: str, answer: Callable[[list[str]], None]) -> None:
        answer(list(self.rooms.get(room, ())))


class _Bucket:
    """A token bucket of room operations (``room_rate`` per second, ``room_burst`` at once)."""

    __slots__ = ("refilled", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.refilled = now


@attrs.define(eq=False)
class Rooms:
    """The broker's rooms front (see the module docstring).

    ``send(peer_id, frame)`` delivers a frame to a member wherever it is
    connected (``False`` if it could not); ``allowed(token, room)`` is the JWT
    ``rooms`` claim check (``None``: every room is allowed).
    """

    _config: BrokerConfig
    directory: Directory
    _send: Callable[[str, str], bool]
    _stats: Stats = attrs.field(kw_only=True)
    _warnings: WarningLimiter = attrs.field(kw_only=True)
    _allowed: Callable[[str, str], bool] | None = attrs.field(kw_only=True, default=None)
    #: Room media through an SFU (``--janus``), or ``None``: set by the broker.
    sfu: Sfu | None = attrs.field(init=False, default=None)
    # Local client id -> the rooms it joined or is joining (ordered).
    _joined: dict[str, dict[str, None]] = attrs.field(init=False, factory=dict)
    _buckets: dict[str, _Bucket] = attrs.field(init=False, factory=dict)

    # -- inspection ----------------------------------------------------------

    def rooms_of(self, peer_id: str) -> list[str]:
        """The rooms the local client ``peer_id`` is in (or joining)."""
        return list(self._joined.get(peer_id, ()))

    @property
    def memberships(self) -> int:
        """Room memberships of the clients on this broker (the ``room_members`` gauge)."""
        return sum(len(rooms) for rooms in self._joined.values())

    @property
    def room_count(self) -> int:
        """Rooms with a member on this broker (the ``rooms`` gauge; one step per membership)."""
        return len({room for rooms in self._joined.values() for room in rooms})

    def local_members(self, room: str) -> list[str]:
        """The clients of this broker in (or joining) ``room``."""
        return [peer_id for peer_id, rooms in self._joined.items() if room in rooms]

    def send(self, peer_id: str, frame: str) -> bool:
        """Send a frame to a member wherever it is connected."""
        return self._send(peer_id, frame)

    def members(self, room: str, answer: Callable[[list[str]], None]) -> None:
        """Call ``answer(ids)`` with the members of ``room`` (``GET <path><key>/rooms/<name>``)."""
        self.directory.members(room, answer)

    # -- from the realm --------------------------------------------------------

    def receive(self, client: Client, envelope: dict[str, JSON], now: float) -> None:
        """Handle a ``ROOM-JOIN`` or ``ROOM-LEAVE`` envelope from the registered ``client``."""
        try:
            message = from_envelope(envelope)
        except ProtocolError as exc:
            self._warnings.warning(
                logger, "room-bad-frame", now, "Ignored a bad room frame from %s: %s",
                truncate(client.id), exc,
            )  # fmt: skip
            return
        if type(message) is RoomJoin:
            self._join(client, message.room, message.metadata, now)
        elif type(message) is RoomLeave:
            self._spend(client.id, now)  # counted, never refused: a leave frees state
            self.leave(client.id, message.room)
        else:
            logger.debug("Ignored a %s from %s", type(message).__name__, truncate(client.id))

    def leave(self, peer_id: str, room: str) -> None:
        """``peer_id`` leaves ``room`` (a no-op if it is not in it)."""
        if _remove(self._joined, peer_id, room) is not None:
            self._leave(room, peer_id)

    def drop(self, peer_id: str) -> None:
        """The local client ``peer_id`` is gone: it leaves every room it is in."""
        self._buckets.pop(peer_id, None)
        rooms = self._joined.pop(peer_id, None)
        for room in rooms or ():
            self._leave(room, peer_id)

    def left(self, room: str, peer_id: str, remaining: Iterable[str]) -> None:
        """Tell ``remaining`` that ``peer_id`` left ``room`` (the cluster's sweep calls it too)."""
        frame = serialize(RoomLeave(room, src=peer_id))
        left = 0
        for member in remaining:
            self._send(member, frame)
            left += 1
        if self.sfu is not None:
            self.sfu.left(room, peer_id, empty=not left)

    # -- joining -----------------------------------------------------------------

    def _join(self, client: Client, room: str, metadata: JSON, now: float) -> None:
        config = self._config
        peer_id = client.id
        if not self._spend(peer_id, now):
            self._refuse(client, room, RoomErrorType.RATE_LIMITED, "too many room operations", now)
            return
        try:
            validate_room_name(room)
            validate_metadata(metadata, config.room_metadata_bytes)
        except PeerError as exc:
            self._refuse(client, room, RoomErrorType(exc.type), str(exc), now)
            return
        if self._allowed is not None and not self._allowed(client.token, room):
            self._refuse(client, room, RoomErrorType.ROOM_FORBIDDEN, "the token does not allow this room", now)  # fmt: skip # noqa: E501
            return
        rooms = self._joined.get(peer_id)
        new = rooms is None or room not in rooms
        limit = config.rooms_per_client
        if new and limit is not None and rooms is not None and len(rooms) >= limit:
            self._refuse(client, room, RoomErrorType.ROOM_LIMIT, f"in {limit} rooms already", now)
            return
        if rooms is None:
            rooms = self._joined[peer_id] = {}
        rooms[room] = None

        def done(answer: dict[str, JSON] | RoomErrorType) -> None:
            if isinstance(answer, RoomErrorType):
                if new:
                    self._forget(peer_id, room)
                text = "the room is full" if answer is RoomErrorType.ROOM_FULL else "too many rooms"
                self._refuse(client, room, answer, text, now)
                return
            if self.sfu is None:
                admitted(answer, None, "")
            else:
                self.sfu.admit(room, peer_id, lambda sfu, why: admitted(answer, sfu, why))

        def admitted(others: dict[str, JSON], sfu: SfuInfo | None, why: str) -> None:
            media = "mesh" if self.sfu is None else "sfu"
            self._send(peer_id, serialize(RoomMembers(room, others, sfu, media=media)))
            if media == "sfu" and sfu is None:
                self._send(peer_id, serialize(RoomSfu(room, None, why)))
            notice = serialize(RoomJoin(room, metadata, src=peer_id))
            for member in others:
                self._send(member, notice)

        self.directory.join(room, peer_id, metadata, done)

    def _forget(self, peer_id: str, room: str) -> None:
        rooms = self._joined.get(peer_id)
        if rooms is not None:
            rooms.pop(room, None)
            if not rooms:
                del self._joined[peer_id]

    def _leave(self, room: str, peer_id: str) -> None:
        self.directory.leave(room, peer_id, lambda remaining: self.left(room, peer_id, remaining))

    def _spend(self, peer_id: str, now: float) -> bool:
        """Take one token from ``peer_id``'s bucket; ``False`` if it is empty."""
        config = self._config
        rate = config.room_rate
        if rate is None:
            return True
        burst = float(config.room_burst)
        bucket = self._buckets.get(peer_id)
        if bucket is None:
            bucket = self._buckets[peer_id] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.refilled) * rate)
        bucket.refilled = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _refuse(
        self, client: Client, room: str, reason: RoomErrorType, text: str, now: float
    ) -> None:
        """Answer ``ROOM-ERROR``, count it, log it (once per interval and reason)."""
        stats = self._stats
        stats.room_refused[reason.value] = stats.room_refused.get(reason.value, 0) + 1
        self._warnings.warning(
            logger, "room-" + reason.value, now, "Refused %s a room (%s): %s",
            truncate(client.id), reason.value, text,
        )  # fmt: skip
        self._send(client.id, serialize(RoomError(truncate(room, 300), reason, text)))
