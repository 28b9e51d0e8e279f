"""Janus's WebSocket API, sans I/O: requests out, replies and events in.

Both the broker (which creates and destroys VideoRoom rooms) and the SDK
(which publishes and subscribes) talk to Janus the same way: JSON text frames
on a WebSocket with the ``janus-protocol`` subprotocol.  :class:`JanusCalls`
is that conversation without the socket or the clock: :meth:`JanusCalls.request`
gives the frame to send and a transaction id, :meth:`JanusCalls.receive` turns
each incoming frame into :class:`Reply` (a request's outcome, matched by
transaction) or :class:`Event` (something Janus said about a handle by itself).

Janus answers two ways, and a request says which it expects:

=============  ===================================================================
``sync``       ``success`` or ``error`` (create, attach, keepalive, destroy,
               VideoRoom's create/destroy/allowed/kick/exists)
``async``      ``ack`` first, then an ``event`` with the same transaction
               (VideoRoom's join, configure, start: those that carry JSEP)
=============  ===================================================================

A Janus ``error``, or a plugin answer holding ``error_code``, is a
:class:`Reply` whose :attr:`Reply.error` is a :class:`JanusError`.  Pure code.

The SFU room a broker hands to a member (:class:`SfuInfo`) is here too: the
rooms extension carries it (:mod:`peerpy_protocol.rooms`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, Literal, TypeAlias

import attrs

from .exceptions import PeerError, ProtocolError
from .messages import JSON

__all__ = [
    "MAX_ID",
    "NO_SUCH_ROOM",
    "ROOM_EXISTS",
    "SUBPROTOCOL",
    "VIDEOROOM",
    "Event",
    "JanusCalls",
    "JanusError",
    "Reply",
    "SfuInfo",
]

#: The WebSocket subprotocol Janus requires.
SUBPROTOCOL: Final = "janus-protocol"
#: The VideoRoom plugin's package name.
VIDEOROOM: Final = "janus.plugin.videoroom"

Mode: TypeAlias = Literal["sync", "async"]


class JanusError(PeerError, type="sfu-error"):
    """Janus refused a request (``code`` is Janus's or the VideoRoom plugin's error code)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


#: The VideoRoom error codes (:attr:`JanusError.code`) peerpy acts on.
NO_SUCH_ROOM: Final = 426
ROOM_EXISTS: Final = 427


@attrs.frozen
class Reply:
    """The outcome of the request ``transaction``: its data and JSEP, or ``error``."""

    transaction: str
    data: Mapping[str, JSON] = attrs.field(factory=dict)
    jsep: Mapping[str, JSON] | None = None
    error: JanusError | None = None


@attrs.frozen
class Event:
    """Something Janus said by itself: ``kind`` is its ``janus`` field (``event``, ``hangup``,
    ``webrtcup``, ``media``, ``slowlink``, ``detached``, ``timeout``...), ``sender`` the handle
    (``None`` for session-wide events), ``data`` the plugin data if any."""

    kind: str
    sender: int | None
    data: Mapping[str, JSON] = attrs.field(factory=dict)
    jsep: Mapping[str, JSON] | None = None


Incoming: TypeAlias = Reply | Event


class JanusCalls:
    """The pending requests of one Janus WebSocket (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: dict[str, Mode] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._pending)

    def request(self, message: dict[str, JSON], mode: Mode = "sync") -> tuple[str, str]:
        """Return ``(transaction, frame)`` for ``message`` (a dict with its ``janus`` verb)."""
        self._next += 1
        transaction = f"t{self._next}"
        self._pending[transaction] = mode
        return transaction, json.dumps({**message, "transaction": transaction})

    def forget(self, transaction: str) -> None:
        """Stop waiting for ``transaction`` (its answer, if it comes, is dropped)."""
        self._pending.pop(transaction, None)

    def receive(self, frame: str | bytes) -> Incoming | None:
        """Interpret one frame from Janus; ``None`` for what needs no action (an ``ack``, an
        answer to a forgotten request).  Raise :class:`ProtocolError` if it is not a JSON object
        with a string ``janus``."""
        try:
            message = json.loads(frame)
        except ValueError as exc:
            raise ProtocolError(f"Janus sent invalid JSON: {exc}") from None
        if not isinstance(message, dict) or not isinstance(message.get("janus"), str):
            raise ProtocolError("Janus sent a frame without a 'janus' verb")
        kind: str = message["janus"]
        transaction = message.get("transaction")
        mode = self._pending.get(transaction) if isinstance(transaction, str) else None
        if mode is not None and isinstance(transaction, str):
            if kind == "ack" and mode == "async":
                return None
            if kind in ("success", "error", "ack") or (kind == "event" and mode == "async"):
                del self._pending[transaction]
                return _reply(transaction, message)
        if kind in ("ack", "success", "error"):
            return None  # an answer to a request we no longer wait for
        sender = message.get("sender")
        data = _plugin_data(message)
        if kind == "trickle" and isinstance(message.get("candidate"), dict):
            data = {"candidate": message["candidate"]}  # {"sdpMid", "candidate"} or completed
        return Event(kind, sender if isinstance(sender, int) else None, data, _jsep(message))


def _plugin_data(message: dict[str, JSON]) -> dict[str, JSON]:
    plugindata = message.get("plugindata")
    if isinstance(plugindata, dict) and isinstance(plugindata.get("data"), dict):
        return dict(plugindata["data"])
    data = message.get("data")
    return dict(data) if isinstance(data, dict) else {}


def _jsep(message: dict[str, JSON]) -> dict[str, JSON] | None:
    jsep = message.get("jsep")
    return dict(jsep) if isinstance(jsep, dict) else None


def _reply(transaction: str, message: dict[str, JSON]) -> Reply:
    if message["janus"] == "error":
        error = message.get("error")
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        reason = error.get("reason")
        return Reply(
            transaction,
            error=JanusError(code if isinstance(code, int) else 0, str(reason or "unknown error")),
        )
    data = _plugin_data(message)
    code = data.get("error_code")
    if code is not None:
        failure = JanusError(code if isinstance(code, int) else 0, str(data.get("error", "")))
        return Reply(transaction, data, error=failure)
    return Reply(transaction, data, _jsep(message))


#: The largest VideoRoom room or participant id peerpy uses (JavaScript's MAX_SAFE_INTEGER).
MAX_ID: Final = 2**53 - 1


@attrs.frozen
class SfuInfo:
    """Where a room's media goes: Janus's WebSocket ``url``, the VideoRoom ``room`` number, its
    ``pin``, this member's ``token`` (minted by the broker for this member only) and the
    participant ``id`` it must join with (the broker kicks a participant whose id is not the
    one it gave the member its display name claims)."""

    url: str
    room: int
    pin: str
    token: str
    id: int

    def to_json(self) -> dict[str, JSON]:
        """The ``"sfu"`` object of ``ROOM-MEMBERS`` and ``ROOM-SFU``."""
        return {"url": self.url, "room": self.room, "pin": self.pin, "token": self.token,
                "id": self.id}  # fmt: skip

    @classmethod
    def from_json(cls, value: JSON) -> SfuInfo:
        """Parse an ``"sfu"`` object; :class:`ProtocolError` if a field is missing or wrong."""
        if not isinstance(value, dict):
            raise ProtocolError("'sfu' must be a JSON object")
        url, room, pin, token, id_ = (value.get(k) for k in ("url", "room", "pin", "token", "id"))
        if not (isinstance(url, str) and url.startswith(("ws://", "wss://"))):
            raise ProtocolError("'sfu' needs a ws:// or wss:// 'url'")
        if not isinstance(pin, str) or not isinstance(token, str):
            raise ProtocolError("'sfu' needs a string 'pin' and 'token'")
        return cls(url, _safe_id(room, "room"), pin, token, _safe_id(id_, "id"))


def _safe_id(value: JSON, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_ID:
        raise ProtocolError(f"'sfu' needs a positive integer {name!r} (at most 2**53 - 1)")
    return value
