"""Room messages: the rooms extension of the broker protocol, as value objects.

Rooms ride the peer's existing broker WebSocket as JSON text frames in the
PeerJS envelope ``{"type", "src", "dst", "payload"}``; PeerJS clients never see
them.  A client asks for the extension by adding ``ext=rooms`` to the
WebSocket URL's query; a broker that has rooms then answers
``{"type":"OPEN","payload":{"ext":["rooms"]}}`` (:data:`OPEN_WITH_ROOMS`).
Without the query parameter OPEN stays byte-identical to ``peer``'s, and a
broker that answers a plain OPEN (PeerJS's ``peer``, an old peerpy) has no
rooms (:func:`offers_rooms`).

==========================  ==========  =======================================================
frame ``type``              direction   payload
==========================  ==========  =======================================================
``ROOM-JOIN``               to broker   ``{"room": NAME, "metadata": JSON}``: join, or update
                                        one's metadata by joining again
``ROOM-LEAVE``              to broker   ``{"room": NAME}``; leaving a room one is not in is a
                                        no-op
``ROOM-MEMBERS``            to joiner   ``{"room": NAME, "members": {ID: METADATA, ...}}``: the
                                        *other* members when the join succeeded
``ROOM-JOIN`` (``src``)     to members  ``{"room": NAME, "metadata": METADATA}``: ``src`` joined
                                        (or changed its metadata)
``ROOM-LEAVE`` (``src``)    to members  ``{"room": NAME}``: ``src`` left, closed its socket,
                                        expired, or its broker died
``ROOM-ERROR``              to joiner   ``{"room": NAME, "type": T, "msg": TEXT}``, ``T`` one of
                                        :class:`RoomErrorType`
``ROOM-SFU``                to members  ``{"room": NAME, "sfu": SFU or null, "msg": TEXT}``: the
                                        room's media moved to another SFU (or has none now)
==========================  ==========  =======================================================

When the broker forwards the room's media through an SFU (``--janus``),
``ROOM-MEMBERS`` also holds ``"sfu": SFU``, the object of
:class:`peerpy_protocol.janus.SfuInfo`: where to publish and subscribe, and
the credentials minted for this member.

A room name follows the peer id rule (:data:`peerpy_protocol.ids.ID_PATTERN`)
and is at most :data:`MAX_NAME_LENGTH` characters; metadata is any JSON value
whose compact serialization is at most ``max_bytes`` UTF-8 bytes
(:data:`DEFAULT_METADATA_BYTES` unless the broker says otherwise).  Both checks
are here (:func:`validate_room_name`, :func:`validate_metadata`) so the SDK
refuses locally what the broker would refuse.  Pure code: no I/O, no clock.

>>> serialize(RoomJoin("lobby", {"name": "Alice"}))
'{"type":"ROOM-JOIN","payload":{"room":"lobby","metadata":{"name":"Alice"}}}'
>>> parse('{"type":"ROOM-LEAVE","src":"bob","payload":{"room":"lobby"}}')
RoomLeave(room='lobby', src='bob')
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Final, TypeAlias

import attrs

from .exceptions import InvalidMetadataError, InvalidRoomError, ProtocolError
from .ids import ID_PATTERN
from .janus import SfuInfo
from .messages import JSON, _dumps, _envelope

__all__ = [
    "DEFAULT_METADATA_BYTES",
    "MAX_NAME_LENGTH",
    "OPEN_WITH_ROOMS",
    "ROOMS_EXT",
    "ROOM_TYPES",
    "RoomError",
    "RoomErrorType",
    "RoomJoin",
    "RoomLeave",
    "RoomMembers",
    "RoomMessage",
    "RoomSfu",
    "from_envelope",
    "metadata_size",
    "offers_rooms",
    "parse",
    "serialize",
    "validate_metadata",
    "validate_room_name",
    "wants_rooms",
]

#: The extension's name, in the URL query (``ext=rooms``) and in OPEN's ``ext`` list.
ROOMS_EXT: Final = "rooms"
#: What a broker with rooms sends instead of ``{"type":"OPEN"}`` to a client that asked.
OPEN_WITH_ROOMS: Final = '{"type":"OPEN","payload":{"ext":["rooms"]}}'
#: The longest room name, in characters.
MAX_NAME_LENGTH: Final = 256
#: The broker's default bound on a member's serialized metadata (``--room-metadata-bytes``).
DEFAULT_METADATA_BYTES: Final = 4096
#: The envelope types this module parses.
ROOM_TYPES: Final = frozenset({"ROOM-JOIN", "ROOM-LEAVE", "ROOM-MEMBERS", "ROOM-ERROR", "ROOM-SFU"})


class RoomErrorType(str, enum.Enum):
    """Why the broker refused a join (``ROOM-ERROR``'s ``type``)."""

    ROOM_FULL = "room-full"
    INVALID_ROOM = "invalid-room"
    INVALID_METADATA = "invalid-metadata"
    ROOM_FORBIDDEN = "room-forbidden"
    ROOM_LIMIT = "room-limit"
    RATE_LIMITED = "rate-limited"


def _error_type(value: str) -> str:
    """A :class:`RoomErrorType` as its plain string value; other strings as they are."""
    return value.value if isinstance(value, RoomErrorType) else str(value)


@attrs.frozen
class RoomJoin:
    """``ROOM-JOIN``: a client joins ``room`` (no ``src``), or the broker says ``src`` joined."""

    room: str
    metadata: JSON = None
    src: str | None = None


@attrs.frozen
class RoomLeave:
    """``ROOM-LEAVE``: a client leaves ``room`` (no ``src``), or the broker says ``src`` left."""

    room: str
    src: str | None = None


@attrs.frozen
class RoomMembers:
    """``ROOM-MEMBERS``: the other members of ``room`` and their metadata, sent to a joiner;
    ``sfu`` when the room's media goes through an SFU."""

    room: str
    members: Mapping[str, JSON] = attrs.field(factory=dict)
    sfu: SfuInfo | None = None
    #: ``"sfu"`` when the room's media goes through an SFU (``sfu`` may then be ``None``: the
    #: SFU is unreachable now), else ``"mesh"``.
    media: str = attrs.field(default="mesh", kw_only=True)


@attrs.frozen
class RoomSfu:
    """``ROOM-SFU``: the room's SFU changed (``sfu``), or there is none now (``None``, ``msg``
    saying why)."""

    room: str
    sfu: SfuInfo | None
    msg: str = ""


@attrs.frozen
class RoomError:
    """``ROOM-ERROR``: the broker refused a join; ``type`` is a :class:`RoomErrorType` value."""

    room: str
    type: str = attrs.field(converter=_error_type)
    msg: str = ""


RoomMessage: TypeAlias = RoomJoin | RoomLeave | RoomMembers | RoomError | RoomSfu


# -- validation --------------------------------------------------------------------------------


def validate_room_name(name: str, pattern: re.Pattern[str] = ID_PATTERN) -> str:
    """Return ``name``, or raise :class:`InvalidRoomError` (breaks the id rule, too long)."""
    if not isinstance(name, str):
        raise InvalidRoomError(f"room name must be a string, got {type(name).__name__}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRoomError(f"room name is {len(name)} characters, over {MAX_NAME_LENGTH}")
    if pattern.fullmatch(name) is None:
        raise InvalidRoomError(
            f'room name "{name}" is invalid: alphanumerics separated by single " ", "_" or "-"'
        )
    return name


def metadata_size(metadata: JSON) -> int:
    """The UTF-8 size of ``metadata``'s compact JSON; :class:`InvalidMetadataError` if not JSON."""
    try:
        return len(_dumps(metadata).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidMetadataError(f"room metadata is not a JSON value: {exc}") from None


def validate_metadata(metadata: JSON, max_bytes: int | None = DEFAULT_METADATA_BYTES) -> JSON:
    """Return ``metadata`` or raise :class:`InvalidMetadataError` (not JSON, or over ``max_bytes``).

    ``max_bytes=None`` (or ``0``) checks only that it is a JSON value.
    """
    size = metadata_size(metadata)
    if max_bytes and size > max_bytes:
        raise InvalidMetadataError(f"room metadata is {size} bytes as JSON, over {max_bytes}")
    return metadata


# -- the capability ----------------------------------------------------------------------------


def wants_rooms(ext: str | None) -> bool:
    """Tell whether a URL's ``ext`` query value (comma-separated names) asks for rooms."""
    return ext is not None and ROOMS_EXT in (part.strip() for part in ext.split(","))


def offers_rooms(open_frame: str | bytes) -> bool:
    """Tell whether an OPEN frame from the broker lists the rooms extension.

    A plain ``{"type":"OPEN"}`` (PeerJS's ``peer``, an old peerpy) gives ``False``;
    a frame that is not OPEN or not JSON raises :class:`ProtocolError`.
    """
    envelope, kind = _envelope(open_frame)
    if kind != "OPEN":
        raise ProtocolError(f"expected OPEN, got {kind!r}")
    payload = envelope.get("payload")
    ext = payload.get("ext") if isinstance(payload, dict) else None
    return isinstance(ext, list) and ROOMS_EXT in ext


# -- parse and serialize -----------------------------------------------------------------------


def _room(payload: JSON, kind: str) -> str:
    """The ``room`` of a room message's payload, which must be an object."""
    if not isinstance(payload, dict):
        raise ProtocolError(f"{kind} payload must be a JSON object")
    room = payload.get("room")
    if not isinstance(room, str):
        raise ProtocolError(f"{kind} payload has no string 'room'")
    return room


def _src(envelope: dict[str, JSON]) -> str | None:
    src = envelope.get("src")
    if src is None or isinstance(src, str):
        return src
    raise ProtocolError(f"'src' must be a string, got {type(src).__name__}")


def from_envelope(envelope: dict[str, JSON]) -> RoomMessage:
    """The room message in a decoded envelope whose ``type`` is in :data:`ROOM_TYPES`.

    Raise :class:`ProtocolError` if the payload lacks a field or has one of the
    wrong type.  Names and metadata are *not* validated here (the broker
    answers those with ``ROOM-ERROR``): see :func:`validate_room_name`.
    """
    kind = envelope.get("type")
    payload: JSON = envelope.get("payload")  # _room() checks it is an object first
    if kind == "ROOM-JOIN":
        return RoomJoin(_room(payload, kind), payload.get("metadata"), _src(envelope))
    if kind == "ROOM-LEAVE":
        return RoomLeave(_room(payload, kind), _src(envelope))
    if kind == "ROOM-MEMBERS":
        members = payload.get("members") if isinstance(payload, dict) else None
        if not isinstance(members, dict):
            raise ProtocolError("ROOM-MEMBERS payload has no object 'members'")
        sfu = payload.get("sfu")
        return RoomMembers(
            _room(payload, kind),
            members,
            None if sfu is None else SfuInfo.from_json(sfu),
            media="sfu" if "sfu" in payload else "mesh",
        )
    if kind == "ROOM-SFU":
        room = _room(payload, kind)
        sfu, msg = payload.get("sfu"), payload.get("msg", "")
        if not isinstance(msg, str):
            raise ProtocolError("ROOM-SFU payload's 'msg' must be a string")
        return RoomSfu(room, None if sfu is None else SfuInfo.from_json(sfu), msg)
    if kind == "ROOM-ERROR":
        room = _room(payload, kind)
        error_type, msg = payload.get("type"), payload.get("msg", "")
        if not isinstance(error_type, str) or not isinstance(msg, str):
            raise ProtocolError("ROOM-ERROR payload needs a string 'type' and 'msg'")
        return RoomError(room, error_type, msg)
    raise ProtocolError(f"{kind!r} is not a room message")


def parse(frame: str | bytes) -> RoomMessage:
    """Parse one frame holding a room message; :class:`ProtocolError` on anything else."""
    envelope, _ = _envelope(frame)
    return from_envelope(envelope)


def _envelope_of(message: RoomMessage) -> dict[str, JSON]:
    if isinstance(message, RoomJoin):
        kind, payload = "ROOM-JOIN", {"room": message.room, "metadata": message.metadata}
    elif isinstance(message, RoomLeave):
        kind, payload = "ROOM-LEAVE", {"room": message.room}
    elif isinstance(message, RoomMembers):
        payload = {"room": message.room, "members": dict(message.members)}
        if message.media == "sfu":
            payload["sfu"] = None if message.sfu is None else message.sfu.to_json()
        return {"type": "ROOM-MEMBERS", "payload": payload}
    elif isinstance(message, RoomSfu):
        sfu = None if message.sfu is None else message.sfu.to_json()
        return {
            "type": "ROOM-SFU",
            "payload": {"room": message.room, "sfu": sfu, "msg": message.msg},
        }
    else:
        payload = {"room": message.room, "type": message.type, "msg": message.msg}
        return {"type": "ROOM-ERROR", "payload": payload}
    if message.src is not None:
        return {"type": kind, "src": message.src, "payload": payload}
    return {"type": kind, "payload": payload}


def serialize(message: RoomMessage) -> str:
    """The JSON text of a room message, keys in ``peer``'s order, ``src`` left out when absent."""
    return _dumps(_envelope_of(message))
