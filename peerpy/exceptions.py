"""The exceptions peerpy raises.

Every exception derives from :class:`PeerError`, and carries the PeerJS error
``type`` string (``"peer-unavailable"``, ``"unavailable-id"``...) as its
:attr:`PeerError.type`, so code ported from PeerJS can keep switching on it.

The tree separates "you misused the API" (:class:`UsageError`) from "the other
side misbehaved" (:class:`ProtocolError`), as h11 does::

    PeerError
    ├── UsageError                 the caller misused the API
    │   ├── InvalidIdError             invalid-id
    │   ├── NotOpenError               not-open-yet
    │   ├── DisconnectedError          disconnected
    │   ├── MessageTooBigError         message-too-big
    │   ├── EncodeError                a value the serialization cannot carry
    │   ├── ConfigurationError         a malformed setting (keyword or PEERPY_* variable)
    │   ├── InvalidAddressError        a bad address or network in a NetworkPolicy
    │   ├── MediaFileError             a media file or device that cannot be opened
    │   ├── InvalidRoomError           invalid-room: a room name breaking the id rule
    │   └── InvalidMetadataError       invalid-metadata: room metadata not JSON, or too big
    ├── ProtocolError              the remote side sent something invalid
    │   └── DecodeError                bytes that do not decode (or reassemble)
    ├── ServerError                server-error: the broker refused us
    │   ├── UnavailableIdError         unavailable-id: the id is taken
    │   ├── InvalidKeyError            invalid-key
    │   ├── InvalidTokenError          the broker refused the token (an expired JWT...)
    │   └── RoomsUnsupportedError      the broker has no rooms (PeerJS's peer, an older broker)
    ├── NetworkError               network: the broker is unreachable or lost
    ├── PeerUnavailableError       peer-unavailable: no such peer on the broker
    ├── WebRTCError                webrtc: SDP or ICE plumbing failed
    │   ├── NegotiationFailedError     negotiation-failed: ICE failed / timed out
    │   │   ├── RemoteGoneError            the remote stopped answering (killed, frozen, cut off)
    │   │   └── ResumeFailedError          a lost connection not resumed within Timeouts.resume
    │   └── BackendVersionError        aiortc/aioice versions the network hooks do not know
    ├── ConnectionClosedError      connection-closed
    └── RoomError                  the broker refused a room operation
        ├── RoomFullError              room-full
        ├── RoomForbiddenError         room-forbidden: the token may not join it
        ├── RoomLimitError             room-limit: too many rooms (ours or the broker's)
        └── RoomRateLimitedError       rate-limited: joining and leaving too fast

``PeerError``, ``UsageError``, ``InvalidIdError``, ``InvalidRoomError``,
``InvalidMetadataError`` and ``ProtocolError`` are
defined in :mod:`peerpy_protocol.exceptions` (the protocol core the broker shares,
distribution ``peerpy-protocol``) and re-exported here: they are the same classes.
File transfers add their own branch (``TransferError`` and friends), drawn in
:mod:`peerpy.transfer.errors`.
"""

from __future__ import annotations

from peerpy_protocol.exceptions import (
    InvalidIdError,
    InvalidMetadataError,
    InvalidRoomError,
    PeerError,
    ProtocolError,
    UsageError,
)

__all__ = [
    "BackendVersionError",
    "ConfigurationError",
    "ConnectionClosedError",
    "DecodeError",
    "DisconnectedError",
    "EncodeError",
    "InvalidAddressError",
    "InvalidIdError",
    "InvalidKeyError",
    "InvalidMetadataError",
    "InvalidRoomError",
    "InvalidTokenError",
    "MediaFileError",
    "MessageTooBigError",
    "NegotiationFailedError",
    "NetworkError",
    "NotOpenError",
    "PeerError",
    "PeerUnavailableError",
    "ProtocolError",
    "RemoteGoneError",
    "ResumeFailedError",
    "RoomError",
    "RoomForbiddenError",
    "RoomFullError",
    "RoomLimitError",
    "RoomRateLimitedError",
    "RoomsUnsupportedError",
    "ServerError",
    "UnavailableIdError",
    "UsageError",
    "WebRTCError",
]


class NotOpenError(UsageError, type="not-open-yet"):
    """The connection is not open (yet, or any more)."""


class DisconnectedError(UsageError, type="disconnected"):
    """The peer is disconnected from the broker or destroyed."""


class MessageTooBigError(UsageError, ValueError, type="message-too-big"):
    """A message is larger than its serialization or the channel allows."""


class EncodeError(UsageError, TypeError, type="serialization"):
    """A value cannot be carried by the chosen serialization."""


class ConfigurationError(UsageError, ValueError, type="configuration"):
    """A setting (keyword or environment variable) is malformed."""


class InvalidAddressError(UsageError, ValueError):
    """An address, network, buffer size or wait given to a ``NetworkPolicy`` is invalid."""


class MediaFileError(UsageError, OSError):
    """A media file or device cannot be opened for reading or writing."""


class DecodeError(ProtocolError, ValueError, type="serialization"):
    """Received bytes do not decode, or chunks do not reassemble."""


class ServerError(PeerError, type="server-error"):
    """The broker refused or failed a request."""


class UnavailableIdError(ServerError, type="unavailable-id"):
    """The id is registered on the broker by someone else."""


class InvalidKeyError(ServerError, type="invalid-key"):
    """The broker rejected the API key."""


class InvalidTokenError(ServerError):
    """The broker refused the token (``--jwt-secret``: expired, forged, another id's).

    The ``type`` stays ``server-error``, what PeerJS reports for it.  Retrying
    with the same token cannot succeed: give the peer a new one
    (``peer.token = ...``, or ``Peer(token=provider)``).
    """


class RoomsUnsupportedError(ServerError, type="rooms-unsupported"):
    """The broker has no rooms: PeerJS's ``peer`` server, or an older peerpy-server.

    Raised at once by :meth:`Peer.join() <peerpy.Peer.join>` when the broker's
    OPEN did not announce the ``rooms`` extension.
    """


class NetworkError(PeerError, type="network"):
    """The broker cannot be reached, or the connection to it was lost."""


class PeerUnavailableError(PeerError, type="peer-unavailable"):
    """The remote peer id is not registered on the broker."""


class WebRTCError(PeerError, type="webrtc"):
    """Creating or applying an offer, answer or candidate failed."""


class NegotiationFailedError(WebRTCError, type="negotiation-failed"):
    """ICE or DTLS did not complete (failed, or timed out)."""


class RemoteGoneError(NegotiationFailedError):
    """An open connection's remote stopped answering ICE consent checks.

    Its process was killed or frozen, or the network between us went away.
    The ``type`` stays ``negotiation-failed``, the error PeerJS reports when
    ICE fails.
    """


class ResumeFailedError(NegotiationFailedError):
    """A resumable connection lost its peer connection and no new one opened in time.

    See :mod:`peerpy.generation`; raised after ``Timeouts.resume``.
    """


class BackendVersionError(WebRTCError, RuntimeError):
    """The installed aiortc/aioice are not the versions the network hooks support."""


class ConnectionClosedError(PeerError, type="connection-closed"):
    """The connection closed."""


class RoomError(PeerError, type="room-error"):
    """The broker refused a room operation; :attr:`type` is its reason."""


class RoomFullError(RoomError, type="room-full"):
    """The room holds the most members the broker allows (``--room-max-members``)."""


class RoomForbiddenError(RoomError, type="room-forbidden"):
    """The token's ``rooms`` claim does not allow this room."""


class RoomLimitError(RoomError, type="room-limit"):
    """This peer is in as many rooms as allowed, or the broker holds as many as it may."""


class RoomRateLimitedError(RoomError, type="rate-limited"):
    """This peer joined and left rooms too fast; try again a little later."""
