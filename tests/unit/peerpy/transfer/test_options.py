"""Transfer options are checked when made (peerpy.transfer.options)."""

from __future__ import annotations

import pytest

from peerpy.transfer import TransferOptions, TransferUsageError
from peerpy.transfer.protocol import MAX_CHUNK


def test_transfer_options_checked() -> None:
    """A chunk that cannot fit one frame, or heartbeats slower than the silence
    timeout, are usage errors."""
    with pytest.raises(TransferUsageError):
        TransferOptions(chunk_size=MAX_CHUNK + 1)
    with pytest.raises(TransferUsageError):
        TransferOptions(idle_timeout=1.0, heartbeat_interval=1.0)
