"""peerpy-protocol: the PeerJS signaling protocol core shared by peerpy and its broker.

Pure code, no I/O: :mod:`peerpy_protocol.messages` (the frames exchanged with
the broker), :mod:`peerpy_protocol.payloads` (what OFFER, ANSWER and CANDIDATE
carry), :mod:`peerpy_protocol.ids` (peer ids and tokens) and
:mod:`peerpy_protocol.exceptions` (the root of peerpy's exception tree).  It
depends on attrs and orjson only, so the broker (``peerpy-server``) installs
without the SDK's WebRTC and media packages.
"""

from __future__ import annotations

from .exceptions import *  # noqa: F403
from .exceptions import __all__ as _exceptions_all

__version__ = "0.1.0"

__all__ = ["__version__", *_exceptions_all]
