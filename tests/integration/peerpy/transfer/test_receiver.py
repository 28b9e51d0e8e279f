"""The receiving side over real peers: what it verifies, and what it refuses of a sender.

Hostile offers come from an authenticated sender (:func:`.support.hostile_offer`):
bounded texts, absurd mtimes, symlinked state and partial files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from peerpy_protocol.ids import random_token

from peerpy.dataconnection import DataConnection
from peerpy.peer import Peer
from peerpy.transfer import (
    IntegrityError,
    PeerVanishedError,
    TransferError,
    TransferProtocolError,
    UnsafePathError,
)
from peerpy.transfer.auth import Code
from peerpy.transfer.channel import Channel, authenticate
from peerpy.transfer.files import PARTIAL_SUFFIX, STATE_SUFFIX, Target, build_manifest
from peerpy.transfer.options import NullProgress
from peerpy.transfer.protocol import (
    MAX_FILES,
    MAX_OFFER_BYTES,
    PROTOCOL,
    Accept,
    Data,
    EntryKind,
    FileDone,
    FileEntry,
    FileStart,
    Offer,
)
from peerpy.transfer.receiver import Completed, receive_over
from peerpy.transfer.sender import send_over

from ....helpers.brokers import peerpy_server
from .support import (
    FAST,
    HOSTILE,
    ConnectionCutter,
    both,
    hostile_offer,
    offer_one_file,
    pair,
    transfer,
)

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


# -- a file received on an earlier connection of the same transfer ------------------


async def test_a_received_file_changed_on_the_sender_before_a_reconnection_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is cut after a.small arrived, and a.small changes on the sender
    before the receiver reconnects: the sender sends the new bytes again, and the
    receiver says the file changed (IntegrityError on both sides) instead of a
    protocol error, never a success with the old copy."""
    folder = tmp_path / "two"
    folder.mkdir()
    small = folder / "a.small"
    small.write_bytes(os.urandom(20_000))
    (folder / "b.big").write_bytes(os.urandom(800_000))
    out = tmp_path / "out"
    other_bytes = os.urandom(20_000)  # same size
    cutter = ConnectionCutter(300_000, lambda: small.write_bytes(other_bytes))
    cutter.install(monkeypatch)
    async with peerpy_server() as url:
        sent, got = await transfer(url, [folder], out, "49-x-y", progress=cutter)
    assert len(cutter.conns) == 2
    assert isinstance(got, IntegrityError), got
    assert "a.small changed on the sender since it was received" in str(got)
    assert isinstance(sent, IntegrityError), sent


async def test_a_skipped_file_with_another_digest_is_refused(tmp_path: Path) -> None:
    """On a reconnection, a sender that skips a file received earlier (resumes it at its
    end) but gives another SHA-256 for it gets IntegrityError, not a success with
    the copy received before."""
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(50_000))
    _, sources = build_manifest([source])
    entry = sources[0].entry
    code = Code(23, ("w", "x"))
    completed: Completed = {}
    out = Target(tmp_path / "out")

    async def lying(s: DataConnection) -> None:
        ch = Channel(s, FAST)
        await authenticate(ch, code, "sender")
        await ch.send(Offer((entry,)))
        accept = await ch.expect(Accept)
        assert [(r.index, r.offset) for r in accept.resume] == [(0, entry.size)]
        await ch.send(FileStart(0, entry.size))  # "nothing left to send"
        await ch.send(FileDone(0, hashlib.sha256(b"other bytes").digest()))
        await ch.recv()  # the receiver's verdict

    async with peerpy_server() as url:
        async with pair(url) as (s, r):  # the first connection delivers the file
            with anyio.fail_after(30):
                sent, got = await both(
                    lambda: send_over(s, code, sources, options=FAST),
                    lambda: receive_over(r, code, out, options=FAST, completed=completed),
                )
        assert not isinstance(got, Exception), got
        assert list(completed) == ["f.bin"]
        async with pair(url) as (s, r):  # the second one lies about it
            with anyio.fail_after(30):
                sent, got = await both(
                    lambda: lying(s),
                    lambda: receive_over(r, code, out, options=FAST, completed=completed),
                )
    assert isinstance(got, IntegrityError), got
    assert "f.bin changed on the sender since it was received" in str(got)
    assert isinstance(sent, IntegrityError), sent


# -- a sender that sends more than it offered ---------------------------------------


@pytest.mark.parametrize(
    ("frames", "ack_every", "refusal"),
    [
        ([1500], FAST.ack_every, "f.bin: more bytes than the offered 1000"),
        ([600, 900], 512, "f.bin: more bytes than the offered 1000"),
        ([1000, 1], 512, "expected FileDone, the sender sent Data"),
    ],
)
async def test_more_bytes_than_offered_are_refused(
    tmp_path: Path, frames: list[int], ack_every: int, refusal: str
) -> None:
    """A sender that offers 1 000 bytes and sends more (one frame past the end, a frame
    that crosses it, or a byte after a complete file) is refused as such; the partial
    file never grows past the offered size and no file is kept as received."""
    code = Code(24, ("y", "z"))
    out = tmp_path / "out"
    payload = os.urandom(sum(frames))
    # The receiver writes a block once it holds ack_every bytes (or the file's end):
    # 64 KiB checks the frame before it is held, 512 also before it is written.
    small = attrs.evolve(FAST, ack_every=ack_every)

    async def greedy(s: DataConnection) -> None:
        ch = await offer_one_file(s, code, 1000, small)
        offset = 0
        for size in frames:
            await ch.send(Data(offset, payload[offset : offset + size]))
            offset += size
        await ch.send(FileDone(0, hashlib.sha256(payload).digest()))
        while True:  # acks, then the receiver's verdict
            await ch.recv()

    async with peerpy_server() as url, pair(url) as (s, r):
        with anyio.fail_after(30):
            sent, got = await both(
                lambda: greedy(s), lambda: receive_over(r, code, Target(out), options=small)
            )
    assert isinstance(got, TransferError), got
    assert not isinstance(got, PeerVanishedError | IntegrityError), got
    assert refusal in str(got)
    assert isinstance(sent, TransferError), sent
    assert refusal in str(sent)
    assert not (out / "f.bin").exists()
    partial = out / ("f.bin" + PARTIAL_SUFFIX)
    assert partial.stat().st_size <= 1000
    assert partial.read_bytes() == payload[: partial.stat().st_size]


# -- hostile offers (an authenticated sender) ------------------------------------------


@pytest.mark.anyio
async def test_texts_are_bounded_in_memory(tmp_path: Path) -> None:
    """A text over 1 MiB, or several texts in one offer, are refused at the offer."""
    from peerpy.transfer import TransferProtocolError
    from peerpy.transfer.protocol import MAX_TEXT, EntryKind, FileEntry

    (tmp_path / "out").mkdir()
    many = [FileEntry(f"t{n}", EntryKind.TEXT, MAX_TEXT, 0.0) for n in range(3)]
    error = await hostile_offer(tmp_path, many)
    assert isinstance(error, TransferProtocolError), error
    assert "only entry" in str(error)
    huge = [FileEntry("t", EntryKind.TEXT, MAX_TEXT + 1, 0.0)]
    error = await hostile_offer(tmp_path, huge)
    assert isinstance(error, TransferProtocolError), error
    assert "text over" in str(error)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.anyio
@pytest.mark.parametrize("mtime", [1e300, -1e300, 2.0**40])
async def test_absurd_mtime_refused_before_anything_is_written(
    tmp_path: Path, mtime: float
) -> None:
    """An offered mtime of ±1e300 (OverflowError in os.utime before) is a protocol
    error at the offer: no file, partial or state file is created."""
    (tmp_path / "out").mkdir()
    error = await hostile_offer(tmp_path, [FileEntry("x", EntryKind.FILE, 4, mtime)])
    assert isinstance(error, TransferProtocolError), error
    assert "mtime" in str(error)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.anyio
@pytest.mark.parametrize("suffix", [STATE_SUFFIX, PARTIAL_SUFFIX])
async def test_state_and_partial_symlinks_not_followed(tmp_path: Path, suffix: str) -> None:
    """A pre-existing NAME.peerpy-state (or -partial) symlink is refused, its target
    untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / ("x" + suffix)).symlink_to(victim)
    source = tmp_path / "x"
    source.write_bytes(b"AAAA")
    _, sources = build_manifest([source])
    code = Code(8, ("c", "d"))
    result: dict[str, Any] = {}
    async with peerpy_server() as url:
        tok = random_token()
        async with Peer("s" + tok, server=url) as sp, Peer("r" + tok, server=url) as rp:

            async def sender() -> None:
                conn = await sp.accept()
                with contextlib.suppress(Exception):
                    await send_over(conn, code, sources, options=HOSTILE)

            async def receiver() -> None:
                conn = await rp.connect(
                    sp.id or "", serialization="raw", reliable=True, metadata={"protocol": PROTOCOL}
                )
                try:
                    await receive_over(conn, code, Target(out), options=HOSTILE)
                except Exception as exc:
                    result["error"] = exc

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender)
                    tg.start_soon(receiver)
    assert isinstance(result.get("error"), UnsafePathError), result
    assert victim.read_text() == "precious data\n"
    assert not (out / "x").exists()
