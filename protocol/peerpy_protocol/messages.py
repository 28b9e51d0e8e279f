"""PeerJS signaling messages as value objects.

Everything that crosses the WebSocket between a peer and the broker is a JSON
text frame holding one *envelope* ``{"type", "src", "dst", "payload"}``.  This
module turns frames into the value objects below and back.  It is pure code: no
I/O, no clock, no event loop; the broker and the peer both use it.

Server to client: :class:`Open`, :class:`IdTaken`, :class:`ServerErrorMessage`,
:class:`InvalidKey`.  Client to server: :class:`Heartbeat`.  Relayed between
clients (the broker forces ``src`` to the sender): :class:`Relay` with a
:class:`RelayType` of OFFER, ANSWER, CANDIDATE, LEAVE or EXPIRE.  The payload of
a relayed message is opaque here; :mod:`peerpy_protocol.payloads` interprets it.

>>> parse('{"type":"OPEN"}')
Open()
>>> serialize(Relay(RelayType.LEAVE, src="a", dst="b"))
'{"type":"LEAVE","src":"a","dst":"b"}'
"""

from __future__ import annotations

import enum
import json
from typing import Any, Final, TypeAlias

import attrs

from .exceptions import ProtocolError

try:  # orjson is 3-5x faster than the json module; the broker relays every frame.
    import orjson
except ImportError:  # pragma: no cover - exercised only without orjson
    orjson = None  # type: ignore[assignment]

__all__ = [
    "CLUSTER_UNAVAILABLE",
    "Heartbeat",
    "IdTaken",
    "InvalidKey",
    "Message",
    "Open",
    "Relay",
    "RelayFrame",
    "RelayType",
    "ServerErrorMessage",
    "Unknown",
    "parse",
    "parse_for_relay",
    "serialize",
    "serialize_relay",
    "store_unreachable",
]

#: A parsed JSON value.
JSON = Any


#: ``payload.reason`` of an EXPIRE our broker sends when it could not route the
#: message because its cluster store (Redis) is unreachable or too slow: the
#: destination may well exist.  A peerpy extra on ``peer``'s wire: PeerJS
#: ignores an EXPIRE's payload (it reports ``Could not connect to peer <src>``
#: either way), and a client-sent EXPIRE can only fail connections to its sender.
CLUSTER_UNAVAILABLE: Final = "cluster-unavailable"


class RelayType(str, enum.Enum):
    """Message types the broker relays from one client to another (``type`` is the name)."""

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
        return name

    OFFER = enum.auto()
    ANSWER = enum.auto()
    CANDIDATE = enum.auto()
    LEAVE = enum.auto()
    EXPIRE = enum.auto()


@attrs.frozen
class Open:
    """The broker registered our id (``OPEN``)."""


@attrs.frozen
class IdTaken:
    """The id is held by a client with another token (``ID-TAKEN``)."""

    msg: str = "ID is taken"


@attrs.frozen
class ServerErrorMessage:
    """The broker refused the connection (``ERROR``); :attr:`msg` says why."""

    msg: str


@attrs.frozen
class InvalidKey:
    """Legacy cloud reply to a bad API key (``INVALID-KEY``); ``peer`` never sends it."""


@attrs.frozen
class Heartbeat:
    """Client liveness signal (``HEARTBEAT``)."""


@attrs.frozen
class Relay:
    """A message relayed between clients: OFFER, ANSWER, CANDIDATE, LEAVE, EXPIRE.

    ``payload`` is any JSON value, ``None`` meaning "absent" (PeerJS leaves an
    undefined payload out of the JSON).  ``src`` and ``dst`` are ``None`` when
    the frame had none.
    """

    type: RelayType
    src: str | None = None
    dst: str | None = None
    payload: JSON = None


@attrs.frozen
class Unknown:
    """A well-formed envelope whose ``type`` we do not know; kept for logging."""

    type: str
    raw: JSON = attrs.field(eq=False, repr=False, default=None)


def store_unreachable(message: Relay) -> bool:
    """Whether ``message`` is an EXPIRE saying the broker's cluster store was unreachable."""
    payload = message.payload
    return (
        message.type is RelayType.EXPIRE
        and isinstance(payload, dict)
        and payload.get("reason") == CLUSTER_UNAVAILABLE
    )


Message: TypeAlias = Open | IdTaken | ServerErrorMessage | InvalidKey | Heartbeat | Relay | Unknown

_RELAY_TYPES: Final = {t.value: t for t in RelayType}
_SIMPLE: Final[dict[str, Message]] = {
    "OPEN": Open(),
    "HEARTBEAT": Heartbeat(),
    "INVALID-KEY": InvalidKey(),
}
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_decoder = json.JSONDecoder()


def _loads(frame: str | bytes) -> JSON:
    """Decode JSON text; raise ``ValueError`` (or ``UnicodeDecodeError``) if invalid."""
    if orjson is not None:
        return orjson.loads(frame)
    return _decoder.decode(frame if isinstance(frame, str) else frame.decode())


def _dumps(envelope: dict[str, JSON]) -> str:
    """Encode compactly, non-ASCII kept as is (what ``JSON.stringify`` does)."""
    if orjson is not None:
        try:
            return orjson.dumps(envelope).decode()
        except TypeError:  # e.g. an int beyond 64 bits or a lone surrogate
            pass
    return _encoder.encode(envelope)


def _optional_str(envelope: dict[str, JSON], field: str) -> str | None:
    value = envelope.get(field)
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError(f"{field!r} must be a string, got {type(value).__name__}")


def _msg(envelope: dict[str, JSON], default: str) -> str:
    payload = envelope.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("msg"), str):
        return str(payload["msg"])
    return default


def _envelope(frame: str | bytes) -> tuple[dict[str, JSON], str]:
    """Decode ``frame`` into a JSON object and its string ``type`` (see :func:`parse`)."""
    try:
        envelope = _loads(frame)
    except ValueError as exc:  # UnicodeDecodeError and orjson's errors included
        raise ProtocolError(f"frame is not valid JSON: {exc}") from None
    except RecursionError:  # the json module on deeply nested input
        raise ProtocolError("frame is nested too deeply") from None
    if not isinstance(envelope, dict):
        raise ProtocolError(f"frame is a JSON {type(envelope).__name__}, not an object")
    kind = envelope.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("frame has no string 'type'")
    return envelope, kind


def _not_relayed(envelope: dict[str, JSON], kind: str) -> Message:
    """The message for an envelope whose ``type`` is not a relayed one."""
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return simple
    if kind == "ID-TAKEN":
        return IdTaken(_msg(envelope, "ID is taken"))
    if kind == "ERROR":
        return ServerErrorMessage(_msg(envelope, ""))
    return Unknown(kind, envelope)


def parse(frame: str | bytes) -> Message:
    """Parse one WebSocket frame into a message.

    Raise :class:`~peerpy_protocol.exceptions.ProtocolError` if the frame is not a JSON
    object with a string ``type``, or if ``src``/``dst`` are not strings.  An
    unknown ``type`` gives :class:`Unknown` rather than an error: PeerJS
    ignores those, and so may the caller.
    """
    envelope, kind = _envelope(frame)
    relay_type = _RELAY_TYPES.get(kind)
    if relay_type is None:
        return _not_relayed(envelope, kind)
    return _relay(relay_type, envelope)


def _relay(relay_type: RelayType, envelope: dict[str, JSON]) -> Relay:
    """The :class:`Relay` for an envelope of a relayed ``type`` (see :func:`parse`)."""
    src, dst = envelope.get("src"), envelope.get("dst")
    if (src is None or type(src) is str) and (dst is None or type(dst) is str):
        return Relay(relay_type, src, dst, envelope.get("payload"))
    return Relay(
        relay_type,
        _optional_str(envelope, "src"),
        _optional_str(envelope, "dst"),
        envelope.get("payload"),
    )


#: What :func:`parse_for_relay` gives for a relayed message: its type, its
#: ``dst`` and the frame to forward.
RelayFrame: TypeAlias = tuple[RelayType, "str | None", str]


def parse_for_relay(frame: str | bytes, src: str) -> Message | RelayFrame:
    """:func:`parse` for the broker, which forwards relayed messages with ``src`` forced.

    A relayed message (OFFER, ANSWER, CANDIDATE, LEAVE, EXPIRE) comes back as
    ``(type, dst, forward)`` where ``forward`` is
    ``serialize_relay(type, src, dst, payload)``; anything else as
    :func:`parse` returns it.  Errors are :func:`parse`'s, raised for the same
    frames with the same texts, plus a :class:`~peerpy_protocol.exceptions.ProtocolError`
    for a payload nested too deeply to encode again.  It skips building a :class:`Relay` only to
    serialize it again, which is most of the broker's per-message Python work.
    """
    envelope, kind = _envelope(frame)
    relay_type = _RELAY_TYPES.get(kind)
    if relay_type is None:
        return _not_relayed(envelope, kind)
    sent_src = envelope.get("src")
    dst = envelope.get("dst")
    payload = envelope.get("payload")
    if sent_src is not None and type(sent_src) is not str:
        _optional_str(envelope, "src")  # raises the same error as parse()
    try:
        if type(dst) is str and payload is not None:
            # The usual case: every field present, so build peer's envelope directly
            # (``kind`` is the JSON's own string, equal to ``relay_type.value``).
            envelope = {"type": kind, "src": src, "dst": dst, "payload": payload}
            return relay_type, dst, _dumps(envelope)
        dst = _optional_str(envelope, "dst")  # raises the same error as parse() if not a string
        return relay_type, dst, serialize_relay(relay_type, src, dst, payload)
    except RecursionError:  # orjson decodes 1024 levels but encodes 254; json recurses
        raise ProtocolError("payload is nested too deeply to forward") from None


def serialize_relay(kind: RelayType, src: str | None, dst: str | None, payload: JSON = None) -> str:
    """``serialize(Relay(kind, src, dst, payload))`` without building the object.

    The broker's hot path: it rewrites ``src`` on every relayed message.
    """
    envelope: dict[str, JSON] = {"type": kind.value}
    if src is not None:
        envelope["src"] = src
    if dst is not None:
        envelope["dst"] = dst
    if payload is not None:
        envelope["payload"] = payload
    return _dumps(envelope)


def serialize(message: Message) -> str:
    """Serialize a message to the JSON text PeerJS and ``peer`` put on the wire.

    Keys come in ``peer``'s order (``type, src, dst, payload``) and absent
    fields are left out.
    """
    envelope: dict[str, JSON]
    if isinstance(message, Relay):
        return serialize_relay(message.type, message.src, message.dst, message.payload)
    if isinstance(message, Open):
        envelope = {"type": "OPEN"}
    elif isinstance(message, Heartbeat):
        envelope = {"type": "HEARTBEAT"}
    elif isinstance(message, IdTaken):
        envelope = {"type": "ID-TAKEN", "payload": {"msg": message.msg}}
    elif isinstance(message, ServerErrorMessage):
        envelope = {"type": "ERROR", "payload": {"msg": message.msg}}
    elif isinstance(message, InvalidKey):
        envelope = {"type": "INVALID-KEY"}
    else:
        envelope = dict(message.raw) if isinstance(message.raw, dict) else {"type": message.type}
    return _dumps(envelope)
