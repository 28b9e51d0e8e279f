"""The root of peerpy's exceptions, and the ones the protocol core raises.

The SDK (``peerpy.exceptions``) and the broker share this root, so one
``except PeerError`` catches what either raises.  Every exception carries the
PeerJS error ``type`` string as :attr:`PeerError.type`::

    PeerError
    ├── UsageError                 the caller misused the API
    │   ├── InvalidIdError             invalid-id: a peer id breaks PeerJS's rule
    │   ├── InvalidRoomError           invalid-room: a room name breaks the id rule or is too long
    │   └── InvalidMetadataError       invalid-metadata: room metadata that is not JSON or too big
    └── ProtocolError              the remote side sent something invalid

The SDK adds the rest of the tree (network, WebRTC, serialization errors...)
under these classes; :mod:`peerpy.exceptions` draws all of it and re-exports
the classes here, so ``peerpy.PeerError is peerpy_protocol.PeerError``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "InvalidIdError",
    "InvalidMetadataError",
    "InvalidRoomError",
    "PeerError",
    "ProtocolError",
    "UsageError",
]


class PeerError(Exception):
    """Root of every peerpy exception.

    :attr:`type` holds the PeerJS error type string for parity with
    ``PeerError.type`` in PeerJS.
    """

    type: ClassVar[str] = "peer-error"


class UsageError(PeerError):
    """The API was misused (a local mistake, not the remote's)."""

    type = "usage"


class InvalidIdError(UsageError, ValueError):
    """A peer id does not follow the PeerJS id rule."""

    type = "invalid-id"


class InvalidRoomError(UsageError, ValueError):
    """A room name breaks the peer id rule or is longer than the bound."""

    type = "invalid-room"


class InvalidMetadataError(UsageError, ValueError):
    """Room metadata is not a JSON value, or its JSON is over the size bound."""

    type = "invalid-metadata"


class ProtocolError(PeerError):
    """The remote side (broker or peer) sent something that breaks the protocol."""

    type = "protocol"
