"""The names this module held before it was split (kept so that imports keep working).

A transfer over one DataConnection is now four modules:
:mod:`~peerpy.transfer.options` (options, progress, stats),
:mod:`~peerpy.transfer.channel` (the framed channel with its heartbeat),
:mod:`~peerpy.transfer.sender` and :mod:`~peerpy.transfer.receiver`.
"""

from __future__ import annotations

from .options import IO_BLOCK, NullProgress, Progress, TransferOptions, TransferStats
from .receiver import Completed, Confirmer, receive_over
from .sender import send_over

__all__ = [
    "IO_BLOCK",
    "Completed",
    "Confirmer",
    "NullProgress",
    "Progress",
    "TransferOptions",
    "TransferStats",
    "receive_over",
    "send_over",
]
