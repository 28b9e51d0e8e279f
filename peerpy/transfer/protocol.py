"""The file-transfer protocol, without I/O: messages and their validation.

A transfer runs over one reliable (ordered) data connection.  Every message is
a map with a ``t`` (type) key, except file data, which travels as bare
``bytes`` values to keep the hot path cheap::

    both        pake {m}            SPAKE2 message (see :mod:`peerpy.transfer.auth`)
    both        confirm {k, f}      key and fingerprint confirmation MACs
    sender      offer {files}       the manifest: paths, sizes, kinds, mtimes
    receiver    accept {resume}     per-file resume offsets + prefix hashes
    receiver    reject {reason}     the user declined
    sender      file {i, o}         file ``i`` follows from offset ``o``
    sender      <bytes>             the next bytes of the current file
    sender      file-done {i, h}    file ``i`` is complete; its SHA-256
    receiver    ack {n}             total bytes written so far (flow control)
    receiver    done {}             every file verified and in place
    either      error {code, msg}   stop; the other side says why

:func:`parse` turns a decoded value into a message object and raises
:class:`~peerpy.transfer.errors.TransferProtocolError` on anything else, so
the async session never inspects raw maps.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from .errors import TransferProtocolError

__all__ = [
    "HASH_NAME",
    "MAX_FILES",
    "PROTOCOL",
    "Accept",
    "Ack",
    "Confirm",
    "Done",
    "EntryKind",
    "Error",
    "FileDone",
    "FileEntry",
    "FileStart",
    "Message",
    "Offer",
    "Pake",
    "Reject",
    "Resume",
    "parse",
]

#: Protocol name, in the connection metadata and mixed into the PAKE.
PROTOCOL: Final = "peerpy-transfer/1"
#: The hash every file is verified with.
HASH_NAME: Final = "sha256"
#: The most entries an offer may list (bounds the receiver's memory).
MAX_FILES: Final = 100_000
#: Longest accepted path in an offer, in characters.
MAX_PATH_CHARS: Final = 4096
_MAX_SIZE: Final = 2**62


class EntryKind(enum.Enum):
    """What an offered entry is."""

    FILE = "file"
    DIR = "dir"


def _field(value: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``value[key]`` checked to be of ``kind`` (bool is not an int here)."""
    item = value.get(key)
    if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
        raise TransferProtocolError(f"message field {key!r} is missing or not {kind}: {item!r}")
    return item


def _count(value: Mapping[str, Any], key: str, maximum: int = _MAX_SIZE) -> int:
    item = _field(value, key, int)
    if not 0 <= item <= maximum:
        raise TransferProtocolError(f"message field {key!r} out of range: {item}")
    return int(item)


@attrs.frozen
class Pake:
    """One side's SPAKE2 message."""

    message: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"t": "pake", "m": self.message}


@attrs.frozen
class Confirm:
    """Key confirmation and the MAC over both DTLS fingerprints."""

    key_mac: bytes
    fingerprint_mac: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"t": "confirm", "k": self.key_mac, "f": self.fingerprint_mac}


@attrs.frozen
class FileEntry:
    """One offered entry: a relative POSIX path, its kind, size and mtime."""

    path: str
    kind: EntryKind = EntryKind.FILE
    size: int = 0
    mtime: float = 0.0
    executable: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {
            "p": self.path,
            "k": self.kind.value,
            "s": self.size,
            "m": self.mtime,
            "x": self.executable,
        }

    @classmethod
    def from_wire(cls, value: object) -> FileEntry:
        if not isinstance(value, Mapping):
            raise TransferProtocolError(f"an offer entry must be a map, got {value!r}")
        path = _field(value, "p", str)
        if not path or len(path) > MAX_PATH_CHARS:
            raise TransferProtocolError(f"offered path is empty or too long: {path[:80]!r}")
        try:
            kind = EntryKind(value.get("k"))
        except ValueError:
            raise TransferProtocolError(f"unknown entry kind {value.get('k')!r}") from None
        mtime = _field(value, "m", (int, float))
        if not math.isfinite(mtime):
            raise TransferProtocolError(f"bad mtime {mtime!r}")
        return cls(path, kind, _count(value, "s"), float(mtime), bool(value.get("x")))


@attrs.frozen
class Offer:
    """The manifest: every directory and file, in sending order."""

    entries: tuple[FileEntry, ...]

    @property
    def files(self) -> list[tuple[int, FileEntry]]:
        """``(index, entry)`` for the regular files."""
        return [(i, e) for i, e in enumerate(self.entries) if e.kind is EntryKind.FILE]

    @property
    def total_bytes(self) -> int:
        """Bytes in all the files together."""
        return sum(e.size for e in self.entries if e.kind is EntryKind.FILE)

    def to_wire(self) -> dict[str, Any]:
        return {"t": "offer", "v": PROTOCOL, "files": [e.to_wire() for e in self.entries]}


@attrs.frozen
class Resume:
    """The receiver holds the first ``offset`` bytes of file ``index``; their SHA-256."""

    index: int
    offset: int
    prefix_hash: bytes


@attrs.frozen
class Accept:
    """The receiver takes the offer; files with partial copies resume."""

    resume: tuple[Resume, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"t": "accept", "resume": [[r.index, r.offset, r.prefix_hash] for r in self.resume]}


@attrs.frozen
class Reject:
    """The receiver declines the offer."""

    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"t": "reject", "reason": self.reason}


@attrs.frozen
class FileStart:
    """The bytes of file ``index`` from ``offset`` on follow."""

    index: int
    offset: int

    def to_wire(self) -> dict[str, Any]:
        return {"t": "file", "i": self.index, "o": self.offset}


@attrs.frozen
class FileDone:
    """File ``index`` is complete; ``digest`` is the SHA-256 of all its bytes."""

    index: int
    digest: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"t": "file-done", "i": self.index, "h": self.digest}


@attrs.frozen
class Ack:
    """The receiver wrote ``received`` bytes of file data in this session."""

    received: int

    def to_wire(self) -> dict[str, Any]:
        return {"t": "ack", "n": self.received}


@attrs.frozen
class Done:
    """The receiver verified every file."""

    def to_wire(self) -> dict[str, Any]:
        return {"t": "done"}


@attrs.frozen
class Error:
    """Stop: ``code`` is a :class:`TransferError` type string, ``message`` says why."""

    code: str
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {"t": "error", "code": self.code, "msg": self.message[:2000]}


Message = (
    Pake | Confirm | Offer | Accept | Reject | FileStart | bytes | FileDone | Ack | Done | Error
)


def _parse_offer(value: Mapping[str, Any]) -> Offer:
    if value.get("v") != PROTOCOL:
        raise TransferProtocolError(f"unsupported transfer protocol {value.get('v')!r}")
    files = _field(value, "files", list)
    if len(files) > MAX_FILES:
        raise TransferProtocolError(f"an offer lists {len(files)} entries, over {MAX_FILES}")
    return Offer(tuple(FileEntry.from_wire(item) for item in files))


def _parse_accept(value: Mapping[str, Any]) -> Accept:
    items = _field(value, "resume", list)
    resume = []
    for item in items:
        ok = isinstance(item, list) and len(item) == 3
        if not ok or not isinstance(item[2], bytes) or len(item[2]) != 32:
            raise TransferProtocolError(f"bad resume entry {item!r}")
        index, offset = _count({"i": item[0]}, "i", MAX_FILES), _count({"o": item[1]}, "o")
        resume.append(Resume(index, offset, item[2]))
    return Accept(tuple(resume))


def parse(value: object) -> Message:
    """Turn one received value into a message; raise TransferProtocolError otherwise."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, Mapping):
        raise TransferProtocolError(f"expected a transfer message, got {type(value).__name__}")
    kind = value.get("t")
    if kind == "pake":
        return Pake(_field(value, "m", bytes))
    if kind == "confirm":
        return Confirm(_field(value, "k", bytes), _field(value, "f", bytes))
    if kind == "offer":
        return _parse_offer(value)
    if kind == "accept":
        return _parse_accept(value)
    if kind == "reject":
        return Reject(str(value.get("reason", ""))[:2000])
    if kind == "file":
        return FileStart(_count(value, "i", MAX_FILES), _count(value, "o"))
    if kind == "file-done":
        digest = _field(value, "h", bytes)
        if len(digest) != 32:
            raise TransferProtocolError("file-done carries a hash of the wrong length")
        return FileDone(_count(value, "i", MAX_FILES), digest)
    if kind == "ack":
        return Ack(_count(value, "n"))
    if kind == "done":
        return Done()
    if kind == "error":
        return Error(str(value.get("code", "remote-error"))[:64], str(value.get("msg", ""))[:2000])
    raise TransferProtocolError(f"unknown transfer message type {kind!r}")
