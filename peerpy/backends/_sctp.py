"""A cheaper SCTP send path for aiortc data connections (aiortc 1.15 and 1.16 only).

aiortc's ``RTCSctpTransport._transmit`` runs for every message sent and every
SACK received, and starts by scanning its whole queue of sent, unacknowledged
chunks for chunks marked for retransmission.  With a few MiB in flight that is
several hundred chunks per call: about a fifth of a sender's CPU time in
bench/throughput.py, most of it finding nothing, since chunks are marked only
after a loss.

:func:`tune` gives one transport a ``_transmit`` that skips the scan while
no chunk can be marked.  Chunks are marked in exactly two places in aiortc
1.15 and 1.16: ``_receive_sack_chunk`` (a SACK reporting gaps strikes missing
chunks) and ``_t3_expired`` (the retransmission timer).  The wrappers of those
two count each call that may mark chunks *before* it runs (``marks``); the
fast ``_transmit`` sends new data exactly as aiortc does (same burst limit,
congestion window, counters and T3 timer) when nothing was marked since the
last complete scan (``clean``), and otherwise calls aiortc's own ``_transmit``,
after which the transport is clean again only if no chunk is left marked.
Forward-TSN chunks (partial reliability) also go through aiortc's own code.

Only the exact aiortc versions read for this (1.15 and 1.16) are tuned, and
only when every attribute used is there; anything else keeps aiortc's own code
(:func:`tune` returns False).  ``PEERPY_SCTP_TUNING=0`` turns it off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiortc
from aiortc import rtcsctptransport

__all__ = ["SUPPORTED_VERSIONS", "supported", "tune", "tuned"]

#: The aiortc versions whose SCTP code this was checked against, as (major, minor).
SUPPORTED_VERSIONS: Final = frozenset({(1, 15), (1, 16)})

_ATTRIBUTES: Final = (
    "_transmit",
    "_receive_sack_chunk",
    "_t3_expired",
    "_t3_start",
    "_send_chunk",
    "_flight_size_increase",
    "_sent_queue",
    "_outbound_queue",
    "_flight_size",
    "_cwnd",
    "_fast_recovery_exit",
    "_forward_tsn_chunk",
    "_t3_handle",
)
_FLAG: Final = "_peerpy_tuned"


def _version() -> tuple[int, int] | None:
    try:
        major, minor = aiortc.__version__.split(".")[:2]
        return int(major), int(minor)
    except (AttributeError, ValueError):
        return None


def supported() -> bool:
    """Whether the installed aiortc is one this tuning was written for (and not turned off)."""
    if os.environ.get("PEERPY_SCTP_TUNING", "1").strip() == "0":
        return False
    return _version() in SUPPORTED_VERSIONS and isinstance(
        getattr(rtcsctptransport, "USERDATA_MAX_LENGTH", None), int
    )


def tuned(transport: object) -> bool:
    """Whether :func:`tune` changed ``transport``."""
    return getattr(transport, _FLAG, None) is not None


class _State:
    """Counts the calls that may mark chunks for retransmission."""

    __slots__ = ("clean", "marks")

    def __init__(self) -> None:
        self.marks = 0  # calls that may have marked chunks
        self.clean = 0  # ``marks`` as of the last scan that left no chunk marked


def tune(transport: Any) -> bool:
    """Give an aiortc ``RTCSctpTransport`` the fast ``_transmit``; return whether it did.

    Idempotent.  Anything but a supported aiortc transport is left alone.
    """
    if tuned(transport):
        return True
    if not supported() or not isinstance(transport, rtcsctptransport.RTCSctpTransport):
        return False
    if not all(hasattr(transport, name) for name in _ATTRIBUTES):
        return False
    state = _State()
    burst_unit: int = rtcsctptransport.USERDATA_MAX_LENGTH
    original_transmit: Callable[[], Awaitable[None]] = transport._transmit
    original_sack: Callable[[Any], Awaitable[None]] = transport._receive_sack_chunk
    original_t3: Callable[[], None] = transport._t3_expired

    async def receive_sack_chunk(chunk: Any) -> None:
        if getattr(chunk, "gaps", None):  # only a SACK with gaps strikes chunks
            state.marks += 1
        await original_sack(chunk)

    def t3_expired() -> None:
        state.marks += 1
        original_t3()

    async def transmit() -> None:
        sctp = transport
        if state.marks != state.clean or sctp._forward_tsn_chunk is not None:
            scanned = state.marks
            await original_transmit()
            if not any(chunk._retransmit for chunk in sctp._sent_queue):
                state.clean = scanned
            return
        # No chunk is marked: aiortc's retransmission loop would do nothing.
        burst = (2 if sctp._fast_recovery_exit is not None else 4) * burst_unit
        cwnd = min(sctp._flight_size + burst, sctp._cwnd)
        while sctp._outbound_queue and sctp._flight_size < cwnd:
            chunk = sctp._outbound_queue.popleft()
            sctp._sent_queue.append(chunk)
            sctp._flight_size_increase(chunk)
            chunk._sent_count += 1
            chunk._sent_time = time.time()
            await sctp._send_chunk(chunk)
            if not sctp._t3_handle:
                sctp._t3_start()

    transport._receive_sack_chunk = receive_sack_chunk  # type: ignore[method-assign]
    transport._t3_expired = t3_expired  # type: ignore[method-assign]
    transport._transmit = transmit  # type: ignore[method-assign]
    setattr(transport, _FLAG, state)
    return True
