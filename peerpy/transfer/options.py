"""What a transfer is tuned with, and what it reports: options, progress, stats.

:class:`TransferOptions` bundles the tuning of one side (chunk size, window,
acks, liveness and decision timeouts); :class:`Progress` is what the sender
and the receiver report to as bytes go through (the command line draws bars
with it); :class:`TransferStats` is what a finished transfer returns.  No I/O
here, and no anyio or aiortc import: the sender and receiver
(:mod:`~peerpy.transfer.sender`, :mod:`~peerpy.transfer.receiver`) use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from .errors import TransferUsageError
from .protocol import MAX_CHUNK, FileEntry, Offer

if TYPE_CHECKING:
    from ..route import Route
    from ..stats import ConnectionStats

__all__ = ["IO_BLOCK", "NullProgress", "Progress", "TransferOptions", "TransferStats"]

#: File bytes read, hashed or written per worker-thread call (whole chunks).
IO_BLOCK: Final = 1024 * 1024


def _check_chunk_size(instance: object, attribute: object, value: int) -> None:
    if not 0 < value <= MAX_CHUNK:
        raise TransferUsageError(f"chunk_size must be 1..{MAX_CHUNK}, not {value}")


def _check_heartbeat(instance: TransferOptions, attribute: object, value: float) -> None:
    if not 0 < value < instance.idle_timeout:
        raise TransferUsageError("heartbeat_interval must be positive and below idle_timeout")


@attrs.frozen
class TransferOptions:
    """Tuning of a transfer (both sides may differ)."""

    #: File bytes per data message (at most :data:`~peerpy.transfer.protocol.MAX_CHUNK`).
    chunk_size: int = attrs.field(default=MAX_CHUNK, validator=_check_chunk_size)
    #: The sender stays at most this many bytes ahead of the receiver's acks.
    window: int = 8 * 1024 * 1024
    #: The receiver acknowledges after this many bytes written.
    ack_every: int = 1024 * 1024
    #: Silence (no message) after which the other side counts as gone, in seconds.
    idle_timeout: float = 3.0
    #: A heartbeat goes out after this long without sending anything, in seconds
    #: (below :attr:`idle_timeout`).
    heartbeat_interval: float = attrs.field(default=1.0, validator=_check_heartbeat)
    #: How long the sender waits for the receiver's person to accept.
    decision_timeout: float = 600.0
    #: After a lost connection, how long the sender waits for the receiver to
    #: come back (same code) to resume, in seconds.
    reconnect_wait: float = 30.0
    #: How long a side that stops waits for its last message to reach the other.
    stop_grace: float = 1.5


class Progress(Protocol):
    """Receives progress reports (the CLI draws bars with rich)."""

    def begin(self, offer: Offer, already: int) -> None:
        """The transfer starts; ``already`` bytes were there from an earlier run."""

    def file(self, entry: FileEntry, offset: int) -> None:
        """``entry`` starts at ``offset``."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes went through."""

    def end(self) -> None:
        """The transfer ended (successfully or not)."""


class NullProgress:
    """Progress that shows nothing."""

    def begin(self, offer: Offer, already: int) -> None:
        """Nothing."""

    def file(self, entry: FileEntry, offset: int) -> None:
        """Nothing."""

    def advance(self, nbytes: int) -> None:
        """Nothing."""

    def end(self) -> None:
        """Nothing."""


@attrs.define
class TransferStats:
    """What a finished transfer moved.

    The sender and the receiver fill it in as the transfer goes, and return it
    at the end; :attr:`rate` is worked out from it.
    """

    #: Files (and texts) offered, and their bytes together.
    files: int = 0
    total_bytes: int = 0
    #: File bytes that crossed the connection in this run.
    transferred_bytes: int = 0
    #: Bytes kept from an earlier interrupted run.
    resumed_bytes: int = 0
    seconds: float = 0.0
    #: Where the received files went (receiver only; ``-`` for standard output).
    paths: list[Path] = attrs.Factory(list)
    #: Texts received (``peerpy send --text``; receiver only).
    texts: list[str] = attrs.Factory(list)
    #: The route the connection took (see :mod:`peerpy.route`).
    route: Route | None = None
    #: The connection's numbers at the end (see :mod:`peerpy.stats`).
    connection: ConnectionStats | None = None

    @property
    def rate(self) -> float:
        """Bytes per second over the connection in this run."""
        return self.transferred_bytes / self.seconds if self.seconds > 0 else 0.0
