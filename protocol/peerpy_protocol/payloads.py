"""Payloads of the relayed OFFER, ANSWER and CANDIDATE messages.

The broker treats payloads as opaque JSON; peers interpret them.  These value
objects hold the fields of spec §3.2 with Pythonic names and convert from and
to the JSON PeerJS 1.5 puts on the wire.  ``from_json`` raises
:class:`~peerpy_protocol.exceptions.ProtocolError` on anything malformed, so a hostile
peer cannot make the caller fail with a ``KeyError`` or ``TypeError``.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .exceptions import ProtocolError

__all__ = [
    "AnswerPayload",
    "CandidatePayload",
    "ConnectionType",
    "IceCandidateInit",
    "OfferPayload",
    "Resume",
    "SessionDescription",
]

JSON = Any


class ConnectionType(str, enum.Enum):
    """The kind of PeerJS connection a payload belongs to."""

    DATA = "data"
    MEDIA = "media"


def _field(obj: JSON, name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if not isinstance(obj, dict):
        raise ProtocolError(f"payload must be a JSON object, got {type(obj).__name__}")
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"payload field {name!r} is missing or has the wrong type")
    return value


def _connection_type(obj: JSON) -> ConnectionType:
    try:
        return ConnectionType(_field(obj, "type", str))
    except ValueError:
        raise ProtocolError(f"unknown connection type {obj.get('type')!r}") from None


@attrs.frozen
class SessionDescription:
    """An SDP offer or answer: ``{"type": "offer", "sdp": "v=0..."}``."""

    type: str
    sdp: str

    @classmethod
    def from_json(cls, obj: JSON) -> SessionDescription:
        kind = _field(obj, "type", str)
        if kind not in ("offer", "answer"):
            raise ProtocolError(f"SDP type must be offer or answer, got {kind!r}")
        return cls(kind, _field(obj, "sdp", str))

    def to_json(self) -> dict[str, JSON]:
        return {"type": self.type, "sdp": self.sdp}


#: The version of peerpy's resumption in ``Resume.version``.
RESUME_VERSION = 1
#: The largest generation and window accepted (JSON numbers stay exact below 2**53).
_MAX_RESUME_NUMBER = 2**53


@attrs.frozen
class Resume:
    """peerpy's resumable-connection capability, in an OFFER or ANSWER (``"peerpyResume"``).

    Only peerpy peers send it: in an OFFER it says "I can resume this data
    connection (or call)" (``generation`` 0) or asks to resume it on a new peer
    connection (``generation`` 1, 2...); in an ANSWER it says the answerer
    resumes too (or, with ``refused``, that it has no such connection to
    resume).  ``window`` is the sender's unacknowledged-tail bound in bytes,
    so the receiver acknowledges often enough.  A PeerJS peer ignores the
    field in an OFFER and never sends it, so its connections stay as they are.
    """

    generation: int = 0
    window: int = 0
    refused: bool = False
    version: int = RESUME_VERSION

    @classmethod
    def from_json(cls, obj: JSON) -> Resume:
        generation = _field(obj, "generation", int)
        window = _field(obj, "window", int)
        version = _field(obj, "version", int)
        if not (0 <= generation < _MAX_RESUME_NUMBER and 0 <= window < _MAX_RESUME_NUMBER):
            raise ProtocolError("peerpyResume generation and window must be in 0..2**53")
        return cls(generation, window, obj.get("refused") is True, version)

    def to_json(self) -> dict[str, JSON]:
        obj: dict[str, JSON] = {
            "version": self.version,
            "generation": self.generation,
            "window": self.window,
        }
        if self.refused:
            obj["refused"] = True
        return obj


def _resume(obj: JSON, kind: ConnectionType) -> Resume | None:
    """The ``peerpyResume`` field of a data or media connection's payload.

    ``None`` if absent or of another version.
    """
    raw = obj.get("peerpyResume")
    if raw is None:
        return None
    resume = Resume.from_json(raw)
    return resume if resume.version == RESUME_VERSION else None


@attrs.frozen
class _Described:
    """What an OFFER and an ANSWER payload share: one connection's SDP."""

    sdp: SessionDescription
    type: ConnectionType
    connection_id: str

    @staticmethod
    def _parse(obj: JSON) -> tuple[SessionDescription, ConnectionType, str]:
        """The shared fields of a payload read from JSON: ``sdp``, ``type``, ``connectionId``."""
        kind = _connection_type(obj)
        sdp = SessionDescription.from_json(_field(obj, "sdp", dict))
        return sdp, kind, _field(obj, "connectionId", str)

    def _json(self) -> dict[str, JSON]:
        """The shared fields, in PeerJS's order."""
        sdp, kind = self.sdp.to_json(), self.type.value
        return {"sdp": sdp, "type": kind, "connectionId": self.connection_id}


@attrs.frozen
class OfferPayload(_Described):
    """What an OFFER carries (spec §3.2).

    ``label``, ``reliable`` and ``serialization`` exist for data connections
    only.  ``metadata`` is any JSON value; ``None`` is left out on the wire, as
    PeerJS leaves out ``undefined``.
    """

    metadata: JSON = None
    label: str | None = None
    reliable: bool | None = None
    serialization: str | None = None
    #: peerpy's resumption capability (connections between peerpy peers).
    resume: Resume | None = None

    @classmethod
    def from_json(cls, obj: JSON) -> OfferPayload:
        sdp, kind, connection_id = cls._parse(obj)
        return cls(
            sdp,
            kind,
            connection_id,
            metadata=obj.get("metadata"),
            label=_field(obj, "label", str, optional=True),
            reliable=bool(obj.get("reliable")) if kind is ConnectionType.DATA else None,
            serialization=_field(obj, "serialization", str, optional=True),
            resume=_resume(obj, kind),
        )

    def to_json(self) -> dict[str, JSON]:
        obj = self._json()
        if self.metadata is not None:
            obj["metadata"] = self.metadata
        if self.type is ConnectionType.DATA:
            obj["label"] = self.label if self.label is not None else self.connection_id
            obj["reliable"] = bool(self.reliable)
            obj["serialization"] = self.serialization or "binary"
        if self.resume is not None:
            obj["peerpyResume"] = self.resume.to_json()
        return obj


@attrs.frozen
class AnswerPayload(_Described):
    """What an ANSWER carries: the SDP answer for one connection."""

    #: The answerer resumes too (only in answer to an OFFER that asked).
    resume: Resume | None = None

    @classmethod
    def from_json(cls, obj: JSON) -> AnswerPayload:
        sdp, kind, connection_id = cls._parse(obj)
        return cls(sdp, kind, connection_id, _resume(obj, kind))

    def to_json(self) -> dict[str, JSON]:
        obj = self._json()
        if self.resume is not None:
            obj["peerpyResume"] = self.resume.to_json()
        return obj


@attrs.frozen
class IceCandidateInit:
    """A browser ``RTCIceCandidate.toJSON()``: the candidate line and its m-line."""

    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    username_fragment: str | None = None

    @classmethod
    def from_json(cls, obj: JSON) -> IceCandidateInit:
        init = cls(
            candidate=_field(obj, "candidate", str),
            sdp_mid=_field(obj, "sdpMid", str, optional=True),
            sdp_mline_index=_field(obj, "sdpMLineIndex", int, optional=True),
            username_fragment=_field(obj, "usernameFragment", str, optional=True),
        )
        if init.sdp_mid is None and init.sdp_mline_index is None:
            raise ProtocolError("candidate has neither sdpMid nor sdpMLineIndex")
        return init

    def to_json(self) -> dict[str, JSON]:
        obj: dict[str, JSON] = {
            "candidate": self.candidate,
            "sdpMid": self.sdp_mid,
            "sdpMLineIndex": self.sdp_mline_index,
        }
        if self.username_fragment is not None:
            obj["usernameFragment"] = self.username_fragment
        return obj


@attrs.frozen
class CandidatePayload:
    """What a CANDIDATE carries: one trickled ICE candidate for one connection."""

    candidate: IceCandidateInit
    type: ConnectionType
    connection_id: str

    @classmethod
    def from_json(cls, obj: JSON) -> CandidatePayload:
        return cls(
            candidate=IceCandidateInit.from_json(_field(obj, "candidate", dict)),
            type=_connection_type(obj),
            connection_id=_field(obj, "connectionId", str),
        )

    def to_json(self) -> dict[str, JSON]:
        return {
            "candidate": self.candidate.to_json(),
            "type": self.type.value,
            "connectionId": self.connection_id,
        }
