"""File I/O for transfers: manifests, safe names, partial files and resume.

Sender side: :func:`build_manifest` walks the paths to send into an
:class:`~peerpy.transfer.protocol.Offer` plus the local source of each file.

Receiver side: :func:`safe_relative_path` refuses names that could land
outside the output folder; :class:`Target` plans where each file goes (refusing
or renaming around existing files); :class:`PartialFile` writes
``NAME.peerpy-partial`` next to the destination with a small
``NAME.peerpy-state`` JSON file, and only renames it to ``NAME`` once its
SHA-256 matched the sender's.  An interrupted transfer leaves both, and the
next one resumes after the bytes already there once both sides hashed that
prefix to the same value.

Everything is streamed in bounded blocks: no file is ever held in memory.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Final, Literal

import attrs

from .errors import (
    DiskFullError,
    TargetExistsError,
    TransferError,
    TransferUsageError,
    UnsafePathError,
)
from .protocol import (
    HASH_NAME,
    MAX_FILES,
    MAX_OFFER_BYTES,
    MAX_TEXT,
    EntryKind,
    FileEntry,
    Offer,
    offer_bytes,
)

__all__ = [
    "PARTIAL_SUFFIX",
    "STATE_SUFFIX",
    "Conflict",
    "PartialFile",
    "Source",
    "StreamSink",
    "Target",
    "build_manifest",
    "hash_prefix",
    "make_folder",
    "safe_relative_path",
]

PARTIAL_SUFFIX: Final = ".peerpy-partial"
STATE_SUFFIX: Final = ".peerpy-state"
#: Block size for hashing existing prefixes.
HASH_BLOCK: Final = 1024 * 1024
Conflict = Literal["refuse", "rename", "overwrite"]
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)

_WINDOWS_DEVICES: Final = re.compile(
    r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)$"
)
_FORBIDDEN_CHARS: Final = re.compile(r'[\x00-\x1f\x7f\\:*?"<>|]')


def safe_relative_path(name: str) -> PurePosixPath:
    """Check an offered name; return it as a relative POSIX path.

    Refuse (:class:`UnsafePathError`) absolute paths, drive letters, ``..``
    and ``.`` components, empty components, backslashes, control characters,
    characters Windows forbids, Windows device names (``CON``, ``nul.txt``...),
    components over 255 bytes and our own partial/state suffixes.
    """
    if name.startswith("/") or _FORBIDDEN_CHARS.search(name):
        raise UnsafePathError(f"refusing unsafe name {name!r}: absolute or forbidden characters")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(f"refusing unsafe name {name!r}: empty, '.' or '..' component")
        if _WINDOWS_DEVICES.match(part.split(".")[0].rstrip(" ").lower()):
            raise UnsafePathError(f"refusing unsafe name {name!r}: {part!r} is a device name")
        if part.endswith((" ", ".")) or len(part.encode()) > 255:
            raise UnsafePathError(f"refusing unsafe name {name!r}: bad component {part!r}")
    if name.endswith((PARTIAL_SUFFIX, STATE_SUFFIX)):
        raise UnsafePathError(f"refusing name {name!r}: peerpy uses that suffix itself")
    return PurePosixPath(*parts)


# -- sender side --------------------------------------------------------------


@attrs.frozen
class Source:
    """Where an offered file's bytes come from."""

    entry: FileEntry
    path: Path | None  # None for directories and texts
    #: The bytes of a text entry (``peerpy send --text``).
    data: bytes | None = None


#: The name a text is offered under (shown by the receiver; never a file).
TEXT_NAME: Final = "text"


def text_manifest(text: str) -> tuple[Offer, list[Source]]:
    """The offer of one text message (``peerpy send --text``)."""
    data = text.encode()
    if len(data) > MAX_TEXT:
        raise TransferUsageError(f"a text may hold at most {MAX_TEXT} bytes, not {len(data)}")
    entry = FileEntry(TEXT_NAME, EntryKind.TEXT, len(data), 0.0)
    return Offer((entry,)), [Source(entry, None, data)]


def _entry(rel: PurePosixPath, path: Path, st: os.stat_result) -> FileEntry:
    if stat.S_ISDIR(st.st_mode):
        return FileEntry(str(rel), EntryKind.DIR, 0, st.st_mtime)
    return FileEntry(
        str(rel), EntryKind.FILE, st.st_size, st.st_mtime, bool(st.st_mode & stat.S_IXUSR)
    )


def build_manifest(paths: Iterable[str | os.PathLike[str]]) -> tuple[Offer, list[Source]]:
    """Walk files and folders to send; return the offer and each entry's source.

    Folders are sent with their tree (sorted, so both sides agree), walked
    without recursion whatever their depth; symbolic links and special files
    inside folders are skipped; top-level names must be distinct.  Raise
    :class:`TransferUsageError` for missing or unreadable paths, and for what
    the receiver would refuse: unsafe names, over
    :data:`~peerpy.transfer.protocol.MAX_FILES` entries (the walk stops there)
    or an offer over :data:`~peerpy.transfer.protocol.MAX_OFFER_BYTES`.
    """
    sources: list[Source] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        try:
            st = path.stat()
        except OSError as exc:
            raise TransferUsageError(f"cannot send {str(raw)!r}: {exc.strerror}") from None
        name = path.resolve().name
        if not name:
            raise TransferUsageError(f"cannot send {str(raw)!r}: it has no name")
        if name in seen:
            raise TransferUsageError(f"two paths to send are both named {name!r}")
        seen.add(name)
        if stat.S_ISREG(st.st_mode):
            sources.append(Source(_entry(PurePosixPath(name), path, st), path))
        elif stat.S_ISDIR(st.st_mode):
            _walk(path, PurePosixPath(name), st, sources)
        else:
            raise TransferUsageError(f"cannot send {str(raw)!r}: not a file or folder")
        _check_count(sources)
    for source in sources:
        safe_relative_path(source.entry.path)  # refuse locally what the peer would refuse
    offer = Offer(tuple(s.entry for s in sources))
    size = offer_bytes(offer)
    if size > MAX_OFFER_BYTES:
        raise TransferUsageError(
            f"the list of {len(sources)} names to send takes {size} bytes, over the "
            f"{MAX_OFFER_BYTES} a receiver accepts: send fewer files at once, or an archive"
        )
    return offer, sources


def _check_count(sources: list[Source]) -> None:
    if len(sources) > MAX_FILES:
        raise TransferUsageError(
            f"over {MAX_FILES} files and folders to send, more than a receiver accepts: "
            "send fewer at once, or an archive"
        )


def _walk(root: Path, rel: PurePosixPath, st: os.stat_result, found: list[Source]) -> None:
    """Append ``root`` and its tree to ``found``, depth first, each folder's names sorted.

    Iterative (a stack of open folders), so depth costs no recursion; stops
    with :class:`TransferUsageError` past :data:`MAX_FILES` entries.
    """
    found.append(Source(_entry(rel, root, st), None))
    stack = [(_children(root), rel)]
    while stack:
        children, parent = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        if child.is_symlink():
            continue
        child_st = child.stat()
        child_rel = parent / child.name
        if stat.S_ISDIR(child_st.st_mode):
            found.append(Source(_entry(child_rel, Path(child.path), child_st), None))
            stack.append((_children(Path(child.path)), child_rel))
        elif stat.S_ISREG(child_st.st_mode):
            found.append(Source(_entry(child_rel, Path(child.path), child_st), Path(child.path)))
        _check_count(found)


def _children(folder: Path) -> Iterator[os.DirEntry[str]]:
    """The entries of ``folder``, sorted by name."""
    try:
        with os.scandir(folder) as entries:
            return iter(sorted(entries, key=lambda e: e.name))
    except OSError as exc:
        raise TransferUsageError(f"cannot read folder {str(folder)!r}: {exc.strerror}") from None


def hash_prefix(path: Path, length: int) -> Any:
    """A SHA-256 object fed the first ``length`` bytes of ``path`` (read in blocks).

    Raise :class:`IntegrityError`-free ``OSError`` as is; the caller decides.
    """
    hasher = hashlib.new(HASH_NAME)
    remaining = length
    with path.open("rb") as f:
        while remaining:
            block = f.read(min(HASH_BLOCK, remaining))
            if not block:
                raise TransferError(f"{path} is shorter than {length} bytes")
            hasher.update(block)
            remaining -= len(block)
    return hasher


# -- receiver side ------------------------------------------------------------


_Folders = dict[str, tuple[Path, "_Folders"]]


class Target:
    """The output folder, and where each offered entry will be written."""

    def __init__(
        self, root: Path, conflict: Conflict = "refuse", stdout: BinaryIO | None = None
    ) -> None:
        self.root = root.resolve()
        self.conflict = conflict
        #: Where a single received file goes instead of the folder (``--stdout``).
        self.stdout = stdout
        # The real folders found under the root (name -> (resolved, its
        # folders)): checking an entry costs one lstat per folder not seen
        # yet, not one per level (1 200 levels took ~15 s with Path.resolve()).
        self._folders: _Folders = {}

    def destination(self, entry: FileEntry) -> Path:
        """The checked destination of ``entry`` inside the root.

        Raise :class:`UnsafePathError` if the name is unsafe, or an existing
        folder on the way is a link leading out of the root.
        """
        rel = safe_relative_path(entry.path)
        path = self.root.joinpath(*rel.parts)
        parent = self._resolve_folder(rel.parts[:-1])
        if not parent.is_relative_to(self.root):
            raise UnsafePathError(f"refusing {entry.path!r}: a link on the way leaves {self.root}")
        if path.is_symlink():
            raise UnsafePathError(f"refusing {entry.path!r}: the destination is a symbolic link")
        return path

    def _resolve_folder(self, parts: tuple[str, ...]) -> Path:
        """``root.joinpath(*parts).resolve()``, walking down the folders known to be real."""
        resolved, children = self.root, self._folders
        for depth, name in enumerate(parts):
            known = children.get(name)
            if known is not None:
                resolved, children = known
                continue
            try:
                st = (resolved / name).lstat()
            except OSError:  # not there (yet): nothing below it can be a link
                return resolved.joinpath(*parts[depth:])
            if stat.S_ISLNK(st.st_mode):  # checked by the caller, never kept
                return self.root.joinpath(*parts).resolve()
            resolved = resolved / name
            if not stat.S_ISDIR(st.st_mode):  # a file in the way: nothing below exists
                return resolved.joinpath(*parts[depth + 1 :])
            children[name] = (resolved, {})
            children = children[name][1]
        return resolved

    def conflicts(self, offer: Offer) -> list[str]:
        """Offered files whose destination already exists (and is not our partial)."""
        return [
            e.path
            for e in offer.entries
            if e.kind is EntryKind.FILE and self.stdout is None and self.destination(e).exists()
        ]

    def final_name(self, path: Path) -> Path:
        """Where a verified file goes, applying the conflict policy."""
        if not path.exists() or self.conflict == "overwrite":
            return path
        if self.conflict == "refuse":
            raise TargetExistsError(f"{path} exists: use --overwrite or --rename").telling_peer(
                f"{path.name} exists on its side (it can receive again with --overwrite "
                "or --rename)"
            )
        for n in range(1, 10_000):
            candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
            if not candidate.exists():
                return candidate
        raise TargetExistsError(f"{path} exists and no free name was found next to it")


def make_folder(path: Path) -> None:
    """Create ``path`` and its parents; raise TransferError if a file is in the way."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(exc, path) from None


def _disk_error(exc: OSError, path: Path) -> TransferError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"the disk is full while writing {path.name}; the partial file "
            f"{path.name}{PARTIAL_SUFFIX} is kept: free some space and receive again to resume"
        )
    return TransferError(f"cannot write {path}: {exc.strerror or exc}")


class PartialFile:
    """One file being received: ``NAME.peerpy-partial`` plus ``NAME.peerpy-state``."""

    def __init__(self, destination: Path, entry: FileEntry) -> None:
        self.destination = destination
        self.entry = entry
        self.partial = destination.with_name(destination.name + PARTIAL_SUFFIX)
        self.state = destination.with_name(destination.name + STATE_SUFFIX)
        self._fd: int | None = None
        self.written = 0

    def _state_value(self) -> dict[str, Any]:
        return {"v": 1, "path": self.entry.path, "size": self.entry.size, "mtime": self.entry.mtime}

    def resumable(self) -> int:
        """Bytes of a previous partial copy of this very file (0 if none or stale).

        Neither file is followed if it is a symbolic link.
        """
        try:
            size = self.partial.lstat()
        except OSError:
            return 0
        if not self._state_matches() or not stat.S_ISREG(size.st_mode):
            return 0
        return min(size.st_size, self.entry.size)

    def _state_matches(self) -> bool:
        """Whether the state file describes this very file (not followed if a link)."""
        try:
            fd = os.open(self.state, os.O_RDONLY | _NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                return bool(json.loads(f.read(64 * 1024)) == self._state_value())
        except (OSError, ValueError):
            return False

    def _write_state(self) -> None:
        """Record which file the partial copy is of.

        Only when it does not already say so: a resume never rewrites it.
        Rewriting it in place (truncate, then write) on every resume once lost
        a resumable partial file to a SIGKILL landing in between, which left
        an empty state file.  A new state is written before any byte of its
        partial file, so an interrupted write loses nothing worth resuming.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW
        with os.fdopen(os.open(self.state, flags, 0o600), "w") as f:
            f.write(json.dumps(self._state_value()))

    def open(self, offset: int) -> None:
        """Open for writing at ``offset`` (truncating beyond it); record the state file.

        The handle also reads: :meth:`digest` reads the file back through it.
        """
        for path in (self.state, self.partial):
            if path.is_symlink():
                raise UnsafePathError(f"refusing to write through the symbolic link {path}")
        try:
            make_folder(self.destination.parent)
            if not self._state_matches():  # a resume leaves it untouched (see _write_state)
                self._write_state()
            flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW
            self._fd = os.open(self.partial, flags, 0o600)
            os.ftruncate(self._fd, offset)
            os.lseek(self._fd, offset, os.SEEK_SET)
        except OSError as exc:
            self.close()
            raise _disk_error(exc, self.destination) from None
        self.written = offset

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``; raise DiskFullError or TransferError on failure."""
        assert self._fd is not None
        if self.written + len(data) > self.entry.size:
            raise TransferError(f"{self.entry.path}: more bytes than the offered {self.entry.size}")
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            raise _disk_error(exc, self.destination) from None
        self.written += len(data)

    def digest(self) -> bytes:
        """The SHA-256 of the partial file as it is on disk, read back to its end.

        Flushed to disk first (``fsync``), then read through the handle we
        wrote with, so whatever else changed the file meanwhile (another
        process, a bad disk) shows.  Reads the whole file: call it in a
        worker thread.
        """
        assert self._fd is not None
        hasher = hashlib.new(HASH_NAME)
        try:
            os.fsync(self._fd)
            offset = 0
            while block := os.pread(self._fd, HASH_BLOCK, offset):
                hasher.update(block)
                offset += len(block)
        except OSError as exc:
            raise _disk_error(exc, self.destination) from None
        return hasher.digest()

    def close(self) -> None:
        """Close the partial file (it stays on disk)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Remove the partial copy and its state (after a hash mismatch)."""
        self.close()
        for path in (self.partial, self.state):
            path.unlink(missing_ok=True)

    def commit(self, target: Target) -> Path:
        """Flush, then rename the verified partial file to its final name."""
        assert self._fd is not None
        try:
            os.fsync(self._fd)
            mode = 0o755 if self.entry.executable else 0o644
            os.fchmod(self._fd, mode & ~_umask())
        except OSError as exc:
            raise _disk_error(exc, self.destination) from None
        self.close()
        final = target.final_name(self.destination)
        try:
            os.replace(self.partial, final)
            self.state.unlink(missing_ok=True)
        except OSError as exc:
            raise _disk_error(exc, final) from None
        # The protocol bounds mtimes; a file system may still refuse one.
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(final, (self.entry.mtime, self.entry.mtime))
        return final


class StreamSink:
    """A received entry that is not a file: a text kept in memory, or ``--stdout``.

    Same interface as :class:`PartialFile`, without resume: nothing is kept
    on disk, so an interrupted run starts again from the first byte, and the
    digest is of the bytes as they were passed on.
    """

    def __init__(self, entry: FileEntry, out: BinaryIO | None) -> None:
        self.entry = entry
        self.out = out
        self.held = bytearray()  # a text (bounded by MAX_TEXT when parsed)
        self.written = 0
        self._hasher = hashlib.new(HASH_NAME)

    def resumable(self) -> int:
        """Always 0: a stream cannot resume."""
        return 0

    def open(self, offset: int) -> None:
        """Start at 0 (the only offset a stream accepts)."""
        if offset:
            raise TransferError(f"{self.entry.path}: a stream cannot resume at {offset}")
        self.written = 0
        self._hasher = hashlib.new(HASH_NAME)

    def write(self, data: bytes | memoryview) -> None:
        """Pass ``data`` on to the output (or keep it, for a text)."""
        if self.written + len(data) > self.entry.size:
            raise TransferError(f"{self.entry.path}: more bytes than the offered {self.entry.size}")
        if self.out is None:
            self.held += data
        else:
            try:
                self.out.write(data)
            except OSError as exc:  # a closed pipe (`| head`), a full disk
                raise TransferError(f"cannot write to standard output: {exc}") from None
        self._hasher.update(data)
        self.written += len(data)

    def digest(self) -> bytes:
        """The SHA-256 of the bytes passed on (hashed as they went: nothing to read back)."""
        return self._hasher.digest()

    def close(self) -> None:
        """Flush the output."""
        if self.out is not None:
            with contextlib.suppress(OSError, ValueError):
                self.out.flush()

    def discard(self) -> None:
        """Nothing to delete: the bytes went out already (the caller says they are bad)."""
        self.held.clear()

    def commit(self, target: Target) -> Path:
        """Nothing to rename; ``-`` stands for standard output or the text."""
        self.close()
        return Path("-")


@functools.cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
