"""peerpy: the PeerJS of Python.

A :class:`Peer` registers an id with a PeerJS-compatible broker and opens data
connections (:meth:`Peer.connect`) and media calls (:meth:`Peer.call`) to other
peers, Python or browser, without SDP or ICE plumbing.
"""

from __future__ import annotations

from .exceptions import *  # noqa: F403
from .exceptions import __all__ as _exceptions_all

__version__ = "0.1.0"
__all__ = ["__version__", *_exceptions_all]
