"""The sender's manifest, safe names and the receiver's partial files, on a real file system."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerpy.transfer import TransferError, TransferUsageError, UnsafePathError, files
from peerpy.transfer.files import (
    PARTIAL_SUFFIX,
    STATE_SUFFIX,
    PartialFile,
    StreamSink,
    Target,
    build_manifest,
    safe_relative_path,
)
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


def test_a_resume_killed_as_it_starts_keeps_the_partial_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver killed while it opens a partial file to resume it leaves it resumable:
    the state file is not rewritten on a resume (it was truncated then rewritten, so a
    SIGKILL in between left an empty one and the next run started from zero)."""
    entry = FileEntry("f.bin", size=10, mtime=1.5)
    first = PartialFile(tmp_path / "f.bin", entry)
    first.open(0)
    first.write(b"012345")
    first.close()
    resumed = PartialFile(tmp_path / "f.bin", entry)
    assert resumed.resumable() == 6

    def killed(*args: object, **kwargs: object) -> str:
        raise SystemExit("killed")  # the process dies wherever the state is written

    monkeypatch.setattr(files.json, "dumps", killed)
    with contextlib.suppress(SystemExit):
        resumed.open(6)
    resumed.close()
    assert PartialFile(tmp_path / "f.bin", entry).resumable() == 6


def test_a_stream_takes_no_byte_past_its_offered_size() -> None:
    """StreamSink.write (texts and --stdout) refuses the same way."""
    out = io.BytesIO()
    sink = StreamSink(FileEntry("-", size=4), out)
    sink.open(0)
    sink.write(b"abc")
    with pytest.raises(TransferError, match="more bytes than the offered 4"):
        sink.write(b"de")
    assert out.getvalue() == b"abc"


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../up", "a/../../b", "a//b", "./a", "a/.", "C:evil", "a\\b", "CON",
     "nul.txt", "lpt1", "a/aux.tar.gz", "bad\x00", "tab\tname", "x" * 256, "trail.",
     "f" + PARTIAL_SUFFIX, "f" + STATE_SUFFIX, ""],
)  # fmt: skip
def test_unsafe_names_refused(name: str) -> None:
    """Absolute paths, '..', device names, control characters... raise UnsafePathError."""
    with pytest.raises(UnsafePathError):
        safe_relative_path(name)


def test_safe_names_accepted() -> None:
    """Ordinary nested names, unicode and dots inside names are fine."""
    assert str(safe_relative_path("photos/été 2024/a.b.jpg")) == "photos/été 2024/a.b.jpg"
    assert str(safe_relative_path("console.log")) == "console.log"


def test_link_escaping_target_refused(tmp_path: Path) -> None:
    """A folder on the way that links outside the output folder is refused."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        Target(out).destination(FileEntry("sub/x"))
    (out / "f").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePathError):
        Target(out).destination(FileEntry("f"))
