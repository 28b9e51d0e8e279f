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

A subclass names its ``type`` in its class statement
(``class InvalidIdError(UsageError, type="invalid-id")``); one that names none
keeps its parent's, as PeerJS reports it.

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

    #: The PeerJS error type string; a subclass sets it in its class
    #: statement's ``type=`` keyword.
    type: ClassVar[str] = "peer-error"

    def __init_subclass__(cls, *, type: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if type is not None:
            cls.type = type


class UsageError(PeerError, type="usage"):
    """The API was misused (a local mistake, not the remote's)."""


class InvalidIdError(UsageError, ValueError, type="invalid-id"):
    """A peer id does not follow the PeerJS id rule."""


class InvalidRoomError(UsageError, ValueError, type="invalid-room"):
    """A room name breaks the peer id rule or is longer than the bound."""


class InvalidMetadataError(UsageError, ValueError, type="invalid-metadata"):
    """Room metadata is not a JSON value, or its JSON is over the size bound."""


class ProtocolError(PeerError, type="protocol"):
    """The remote side (broker or peer) sent something that breaks the protocol."""
