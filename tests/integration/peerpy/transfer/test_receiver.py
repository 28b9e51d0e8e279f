"""The receiving side over real peers: what it verifies, and what it refuses of a sender."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from peerpy.dataconnection import DataConnection
from peerpy.transfer import IntegrityError, TransferProtocolError
from peerpy.transfer.auth import Code
from peerpy.transfer.channel import Channel, authenticate
from peerpy.transfer.files import PARTIAL_SUFFIX, Target, build_manifest
from peerpy.transfer.options import NullProgress
from peerpy.transfer.protocol import MAX_FILES, MAX_OFFER_BYTES, FileEntry, Offer
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


async def test_an_offer_over_its_byte_bound_is_refused_before_asking(tmp_path: Path) -> None:
    """An authenticated sender offering 4 200 paths of 4 000 characters (16.5 MB; 100 000
    of them would be ~0.4 GB) is refused once the offer passes MAX_OFFER_BYTES: the
    person is never asked, and the sender hears why."""
    code = Code(22, ("u", "v"))
    entries = tuple(FileEntry(f"{i:06}" + "p" * 3994, size=1) for i in range(4200))
    asked: list[Offer] = []

    async def hostile(s: DataConnection) -> None:
        ch = Channel(s, FAST)
        await authenticate(ch, code, "sender")
        await ch.send(Offer(entries))
        await ch.recv()  # the receiver's refusal

    async def confirm(offer: Offer, already: int) -> bool:
        asked.append(offer)
        return True

    async with peerpy_server() as url, pair(url) as (s, r):
        with anyio.fail_after(60):
            sent, got = await both(
                lambda: hostile(s),
                lambda: receive_over(r, code, Target(tmp_path), options=FAST, confirm=confirm),
            )
    assert len(entries) < MAX_FILES
    assert isinstance(got, TransferProtocolError), got
    assert f"an offer of over {MAX_OFFER_BYTES} bytes" in str(got)
    assert asked == []
    assert isinstance(sent, TransferProtocolError), sent
