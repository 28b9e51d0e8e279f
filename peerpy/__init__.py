"""peerpy: the PeerJS of Python.

A :class:`Peer` registers an id with a PeerJS-compatible broker and opens data
connections (:meth:`Peer.connect`) and media calls (:meth:`Peer.call`) to other
peers, Python or browser, without SDP or ICE plumbing.

The protocol core (:mod:`peerpy_protocol.messages`, :mod:`peerpy_protocol.payloads`,
:mod:`peerpy.binarypack`, :mod:`peerpy.serialization`...) imports no I/O
library; the names below that need aiortc and anyio load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names
from .exceptions import *  # noqa: F403
from .exceptions import __all__ as _exceptions_all

if TYPE_CHECKING:
    from .config import Limits as Limits
    from .config import Timeouts as Timeouts
    from .dataconnection import DataConnection as DataConnection
    from .mediaconnection import MediaConnection as MediaConnection
    from .mediaconnection import MediaStream as MediaStream
    from .network import NetworkPolicy as NetworkPolicy
    from .peer import Peer as Peer
    from .room import Room as Room
    from .route import Route as Route
    from .stats import ConnectionStats as ConnectionStats
    from .stats import TrackStats as TrackStats

__version__ = "0.1.0"

_LAZY = {
    "Peer": "peer",
    "DataConnection": "dataconnection",
    "MediaConnection": "mediaconnection",
    "MediaStream": "mediaconnection",
    "Limits": "config",
    "Timeouts": "config",
    "NetworkPolicy": "network",
    "Room": "room",
    "Route": "route",
    "ConnectionStats": "stats",
    "TrackStats": "stats",
}

__all__ = ["__version__", *_exceptions_all, *_LAZY]


__getattr__ = lazy_names(__name__, _LAZY)
