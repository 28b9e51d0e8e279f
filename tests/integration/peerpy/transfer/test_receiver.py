"""The receiving side over real peers: what it verifies, and what it refuses of a sender."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from peerpy.transfer import IntegrityError
from peerpy.transfer.auth import Code
from peerpy.transfer.files import PARTIAL_SUFFIX, Target, build_manifest
from peerpy.transfer.options import NullProgress
from peerpy.transfer.receiver import receive_over
from peerpy.transfer.sender import send_over

from ....brokers import peerpy_server
from .support import FAST, both, pair

pytestmark = pytest.mark.anyio


async def test_bytes_changed_on_disk_while_receiving_are_detected(tmp_path: Path) -> None:
    """8 bytes overwritten in NAME.peerpy-partial mid-receive (by another process, a
    bad disk) fail the check of the file on disk: IntegrityError on both sides, and
    no file poses as verified."""
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(3_000_000))
    _, sources = build_manifest([source])
    out = tmp_path / "out"
    partial = out / ("f.bin" + PARTIAL_SUFFIX)

    class Tamper(NullProgress):
        seen = 0
        tampered = False

        def advance(self, nbytes: int) -> None:
            self.seen += nbytes
            if self.seen >= 1_000_000 and not self.tampered:
                with partial.open("r+b") as f:  # what xfer_tamper_during.sh does
                    f.seek(1000)
                    f.write(b"TAMPERED")
                self.tampered = True

    tamper = Tamper()
    code = Code(21, ("s", "t"))
    async with peerpy_server() as url, pair(url) as (s, r):
        with anyio.fail_after(60):
            sent, got = await both(
                lambda: send_over(s, code, sources, options=FAST),
                lambda: receive_over(r, code, Target(out), options=FAST, progress=tamper),
            )
    assert tamper.tampered
    assert isinstance(got, IntegrityError), got
    assert "on disk" in str(got)
    assert isinstance(sent, IntegrityError), sent
    assert not (out / "f.bin").exists()
    assert not partial.exists()  # the bad copy is deleted: a rerun starts over
