"""The sender's manifest and the receiver's partial files, on a real file system."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerpy.transfer import TransferError, TransferUsageError
from peerpy.transfer.files import PartialFile, StreamSink, build_manifest
from peerpy.transfer.protocol import MAX_OFFER_BYTES, EntryKind, FileEntry, offer_bytes

from ....helpers.trees import long_names, make_deep_folder, remove_tree

#: Deeper than Python's default recursion limit (1000).
DEPTH = 1200


@pytest.fixture
def deep_folder(tmp_path: Path) -> Iterator[Path]:
    """``deep/a/a/.../a/f`` with DEPTH folders ``a``, removed at the end."""
    yield make_deep_folder(tmp_path / "deep", DEPTH)
    remove_tree(tmp_path / "deep")


def test_a_folder_deeper_than_the_recursion_limit_is_walked(
    tmp_path: Path, deep_folder: Path
) -> None:
    """1 200 nested folders (a RecursionError before): every folder, then the file."""
    offer, sources = build_manifest([deep_folder])
    assert len(offer.entries) == DEPTH + 2
    assert [e.kind for e in offer.entries] == [EntryKind.DIR] * (DEPTH + 1) + [EntryKind.FILE]
    assert offer.entries[-1].path == "/".join(["deep", *["a"] * DEPTH, "f"])
    assert sources[-1].path == tmp_path.joinpath("deep", *["a"] * DEPTH, "f")


def test_an_offer_over_its_byte_bound_is_refused_by_the_sender(tmp_path: Path) -> None:
    """Names whose list a receiver would refuse (over MAX_OFFER_BYTES) are refused
    here, before anything is registered; a hundred names fewer pass."""
    folder = long_names(tmp_path, MAX_OFFER_BYTES)
    with pytest.raises(TransferUsageError, match="over the 16777216 a receiver accepts"):
        build_manifest([folder])
    names = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in names[-100:]:  # ~380 kB of names
        path.unlink()
    offer, _ = build_manifest([folder])
    assert MAX_OFFER_BYTES - 1024 * 1024 < offer_bytes(offer) <= MAX_OFFER_BYTES


def test_a_partial_file_takes_no_byte_past_its_offered_size(tmp_path: Path) -> None:
    """PartialFile.write refuses what would grow the file past the offered size, and
    writes none of it."""
    partial = PartialFile(tmp_path / "f.bin", FileEntry("f.bin", size=10))
    partial.open(0)
    partial.write(b"0123456")
    with pytest.raises(TransferError, match="more bytes than the offered 10"):
        partial.write(b"789A")
    partial.write(b"789")
    with pytest.raises(TransferError, match="more bytes than the offered 10"):
        partial.write(b"X")
    partial.close()
    assert partial.partial.read_bytes() == b"0123456789"


def test_a_stream_takes_no_byte_past_its_offered_size() -> None:
    """StreamSink.write (texts and --stdout) refuses the same way."""
    out = io.BytesIO()
    sink = StreamSink(FileEntry("-", size=4), out)
    sink.open(0)
    sink.write(b"abc")
    with pytest.raises(TransferError, match="more bytes than the offered 4"):
        sink.write(b"de")
    assert out.getvalue() == b"abc"
