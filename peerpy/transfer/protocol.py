"""The file-transfer protocol, without I/O: messages and their validation.

A transfer runs over one reliable (ordered) data connection with the ``raw``
serialization.  Every transfer message is exactly one data-channel message
(a *frame*) of at most :data:`MAX_FRAME` bytes, so a message can never be cut
in half on the wire: cancelling a send either queued the whole frame or
nothing.  The first byte says what the frame holds::

    D  offset(8 bytes, big-endian)  file bytes   the bytes of the current file at offset
    H                                            heartbeat: "still here" (every second when idle)
    M  msgpack map with a ``t`` key              a control message, below

Control messages (an offer or accept too long for one frame continues in more
frames of the same type, with ``more: true`` on all but the last; an offer
lists at most :data:`MAX_FILES` entries in at most :data:`MAX_OFFER_BYTES`)::

    both        pake {m}            SPAKE2 message (see :mod:`peerpy.transfer.auth`)
    both        confirm {k, f}      key and fingerprint confirmation MACs
    sender      offer {files}       the manifest: paths, sizes, kinds, mtimes
    receiver    accept {resume}     per-file resume offsets + prefix hashes
    receiver    reject {reason}     the user declined
    sender      file {i, o}         file ``i`` follows from offset ``o``
    sender      <D frame>           the next bytes of the current file, at their offset
    sender      file-done {i, h}    file ``i`` is complete; its SHA-256
    receiver    ack {n}             total bytes written so far (flow control)
    receiver    done {}             every file verified and in place
    either      error {code, msg}   stop; the other side says why (``stopped``: on purpose)

:func:`encode` turns a message into its frames; a :class:`Decoder` turns
received frames back into messages and raises
:class:`~peerpy.transfer.errors.TransferProtocolError` on anything else, so
the async session never inspects raw maps.  Until the peer proved it knows
the code, the decoder refuses any frame over :data:`PRE_AUTH_MAX_FRAME`
bytes *before* decoding it: a stranger who knows only the nameplate can make
us hold a few KiB, not gigabytes.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import attrs
import msgpack  # type: ignore[import-untyped]

from .errors import TransferProtocolError

__all__ = [
    "HASH_NAME",
    "MAX_CHUNK",
    "MAX_FILES",
    "MAX_FRAME",
    "MAX_OFFER_BYTES",
    "MAX_TEXT",
    "PAYLOAD_KINDS",
    "PRE_AUTH_MAX_FRAME",
    "PROTOCOL",
    "Accept",
    "Ack",
    "Confirm",
    "Data",
    "Decoder",
    "Done",
    "EntryKind",
    "Error",
    "FileDone",
    "FileEntry",
    "FileStart",
    "Heartbeat",
    "Message",
    "Offer",
    "Pake",
    "Reject",
    "Resume",
    "encode",
    "offer_bytes",
    "parse",
]

#: Protocol name, in the connection metadata and mixed into the PAKE.
PROTOCOL: Final = "peerpy-transfer/2"
#: The hash every file is verified with.
HASH_NAME: Final = "sha256"
#: The most entries an offer may list (bounds the receiver's memory).
MAX_FILES: Final = 100_000
#: The most bytes the frames of one offer may take together: the receiver
#: holds the whole offer before its person is asked, and 100 000 paths of
#: 4 096 characters would be ~0.4 GB.  16 MiB leaves ~130 characters per path
#: at the entry limit, and more for fewer entries.
MAX_OFFER_BYTES: Final = 16 * 1024 * 1024
#: Longest accepted path in an offer, in characters.
MAX_PATH_CHARS: Final = 4096
_MAX_SIZE: Final = 2**62
#: The largest frame (data-channel message): the SCTP default max-message-size.
MAX_FRAME: Final = 65536
#: The largest frame accepted before the peer proved it knows the code: the
#: handshake's messages take under 200 bytes, an error message up to ~2 KiB.
PRE_AUTH_MAX_FRAME: Final = 4096
_DATA_HEADER: Final = struct.Struct(">cQ")
#: The most file bytes one data frame carries.
MAX_CHUNK: Final = MAX_FRAME - _DATA_HEADER.size
#: Modification times are refused outside this many seconds around 1970
#: (about 544 years): ``os.utime`` overflows on values such as 1e300.
MAX_MTIME: Final = 2.0**34


class EntryKind(enum.Enum):
    """What an offered entry is."""

    FILE = "file"
    DIR = "dir"
    #: A message (``peerpy send --text``): the receiver prints it, writes no file.
    TEXT = "text"


#: Entry kinds whose bytes are sent (a directory has none).
PAYLOAD_KINDS: Final = frozenset({EntryKind.FILE, EntryKind.TEXT})
#: The longest ``--text`` message, in UTF-8 bytes: the receiver holds it in memory.
MAX_TEXT: Final = 1024 * 1024


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


class _Control:
    """A control message whose map is its ``t`` value and its fields under short keys.

    A subclass (an attrs class) names both, the keys in field order, in its
    class statement (``class Ack(_Control, tag="ack", keys=("n",))``);
    :meth:`to_wire` builds the map from them.
    """

    __slots__ = ()
    tag: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]

    def __init_subclass__(
        cls, *, tag: str | None = None, keys: tuple[str, ...] = (), **kwargs: object
    ) -> None:
        super().__init_subclass__(**kwargs)
        if tag is not None:  # attrs re-creates the class without the keywords
            cls.tag, cls.keys = tag, keys

    def to_wire(self) -> dict[str, Any]:
        """The map msgpack packs: ``t``, then each field under its key."""
        fields = attrs.fields(type(self))  # type: ignore[arg-type]  # subclasses are attrs classes
        values = [getattr(self, field.name) for field in fields]
        return {"t": self.tag, **dict(zip(self.keys, values, strict=True))}


@attrs.frozen
class Pake(_Control, tag="pake", keys=("m",)):
    """One side's SPAKE2 message."""

    message: bytes


@attrs.frozen
class Confirm(_Control, tag="confirm", keys=("k", "f")):
    """Key confirmation and the MAC over both DTLS fingerprints.

    ``key_mac`` shows the sender derived the same SPAKE2 key; ``fingerprint_mac``
    binds that key to the DTLS fingerprints it sees (see :mod:`peerpy.transfer.auth`).
    """

    key_mac: bytes
    fingerprint_mac: bytes


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
        if kind is EntryKind.TEXT and _count(value, "s") > MAX_TEXT:
            raise TransferProtocolError(f"a text over {MAX_TEXT} bytes")
        if not (math.isfinite(mtime) and -MAX_MTIME <= mtime <= MAX_MTIME):
            raise TransferProtocolError(f"bad mtime {mtime!r} for {path[:80]!r}")
        return cls(path, kind, _count(value, "s"), float(mtime), bool(value.get("x")))


@attrs.frozen
class Offer:
    """The manifest: every directory and file, in sending order."""

    entries: tuple[FileEntry, ...]

    @property
    def files(self) -> list[tuple[int, FileEntry]]:
        """``(index, entry)`` for the entries with bytes (files and texts)."""
        return [(i, e) for i, e in enumerate(self.entries) if e.kind in PAYLOAD_KINDS]

    @property
    def total_bytes(self) -> int:
        """Bytes in all the files (and texts) together."""
        return sum(e.size for e in self.entries if e.kind in PAYLOAD_KINDS)


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


@attrs.frozen
class Reject(_Control, tag="reject", keys=("reason",)):
    """The receiver declines the offer."""

    reason: str


@attrs.frozen
class FileStart(_Control, tag="file", keys=("i", "o")):
    """The bytes of file ``index`` from ``offset`` on follow.

    ``offset`` is 0, or the end of the receiver's partial copy when its
    :class:`Resume` prefix hash matched the sender's file.
    """

    index: int
    offset: int


@attrs.frozen
class Data:
    """Bytes of the current file, from ``offset`` on."""

    offset: int
    data: bytes | memoryview


@attrs.frozen
class Heartbeat:
    """Nothing but "still here": sent after a second without any other message."""


@attrs.frozen
class FileDone(_Control, tag="file-done", keys=("i", "h")):
    """File ``index`` is complete; ``digest`` is the SHA-256 of all its bytes."""

    index: int
    digest: bytes


@attrs.frozen
class Ack(_Control, tag="ack", keys=("n",)):
    """The receiver wrote ``received`` bytes of file data in this session."""

    received: int


@attrs.frozen
class Done(_Control, tag="done"):
    """The receiver verified every file."""


@attrs.frozen
class Error(_Control, tag="error", keys=("code", "msg")):
    """Stop: ``code`` is a :class:`TransferError` type string, ``message`` says why."""

    code: str
    message: str

    def to_wire(self) -> dict[str, Any]:
        """As :meth:`_Control.to_wire`, the text cut to 2 000 characters."""
        return {**super().to_wire(), "msg": self.message[:2000]}


Message = (
    Pake
    | Confirm
    | Offer
    | Accept
    | Reject
    | FileStart
    | Data
    | Heartbeat
    | FileDone
    | Ack
    | Done
    | Error
)


def _parse_entries(value: Mapping[str, Any]) -> list[FileEntry]:
    files = _field(value, "files", list)
    if len(files) > MAX_FILES:
        raise TransferProtocolError(f"an offer lists {len(files)} entries, over {MAX_FILES}")
    return [FileEntry.from_wire(item) for item in files]


def _parse_resume(value: Mapping[str, Any]) -> list[Resume]:
    items = _field(value, "resume", list)
    resume = []
    for item in items:
        ok = isinstance(item, list) and len(item) == 3
        if not ok or not isinstance(item[2], bytes) or len(item[2]) != 32:
            raise TransferProtocolError(f"bad resume entry {item!r}"[:200])
        index, offset = _count({"i": item[0]}, "i", MAX_FILES), _count({"o": item[1]}, "o")
        resume.append(Resume(index, offset, item[2]))
    return resume


def parse(value: object) -> Message:
    """Turn one decoded control map into a message; raise TransferProtocolError otherwise.

    An offer or accept parsed here is one frame's part of it: :class:`Decoder`
    joins the parts.
    """
    if not isinstance(value, Mapping):
        raise TransferProtocolError(f"expected a transfer message, got {type(value).__name__}")
    kind = value.get("t")
    if kind == "pake":
        return Pake(_field(value, "m", bytes))
    if kind == "confirm":
        return Confirm(_field(value, "k", bytes), _field(value, "f", bytes))
    if kind == "offer":
        return Offer(tuple(_parse_entries(value)))
    if kind == "accept":
        return Accept(tuple(_parse_resume(value)))
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
    raise TransferProtocolError(f"unknown transfer message type {kind!r}"[:200])


# -- frames -------------------------------------------------------------------------

_HEARTBEAT_FRAME: Final = b"H"
#: Room left in a frame for an offer's or accept's own keys.
_PART_SLACK: Final = 64


def _control(value: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return b"M" + packed


def _parts(head: dict[str, Any], key: str, items: list[Any]) -> list[bytes]:
    """``head`` plus ``items`` under ``key``, split into frames of at most MAX_FRAME bytes."""
    frames: list[bytes] = []
    batch: list[Any] = []
    size = len(_control(head)) + _PART_SLACK
    for item in items:
        item_size = len(msgpack.packb(item, use_bin_type=True))
        if batch and size + item_size > MAX_FRAME:
            frames.append(_control({**head, key: batch, "more": True}))
            head, batch = {"t": head["t"]}, []
            size = len(_control(head)) + _PART_SLACK
        batch.append(item)
        size += item_size
    frames.append(_control({**head, key: batch, "more": False}))
    for frame in frames:
        if len(frame) > MAX_FRAME:
            raise TransferProtocolError(f"an {head['t']} entry does not fit in one frame")
    return frames


def offer_bytes(offer: Offer) -> int:
    """The bytes the frames of ``offer`` take (at most :data:`MAX_OFFER_BYTES` accepted)."""
    return sum(len(frame) for frame in encode(offer))


def encode(message: Message) -> list[bytes]:
    """The frames carrying ``message``: one, except for long offers and accepts."""
    if isinstance(message, Data):
        return [_DATA_HEADER.pack(b"D", message.offset) + message.data]
    if isinstance(message, Heartbeat):
        return [_HEARTBEAT_FRAME]
    if isinstance(message, Offer):
        head = {"t": "offer", "v": PROTOCOL}
        return _parts(head, "files", [e.to_wire() for e in message.entries])
    if isinstance(message, Accept):
        items = [[r.index, r.offset, r.prefix_hash] for r in message.resume]
        return _parts({"t": "accept"}, "resume", items)
    return [_control(message.to_wire())]


class Decoder:
    """Received frames in, messages out; one per connection, sans I/O.

    Until :meth:`authenticated` is called, frames over
    :data:`PRE_AUTH_MAX_FRAME` bytes are refused before anything is decoded.
    """

    def __init__(self) -> None:
        self.max_frame = PRE_AUTH_MAX_FRAME
        self._entries: list[FileEntry] | None = None  # an offer being joined
        self._offer_bytes = 0  # the frames of that offer so far
        self._resume: list[Resume] | None = None  # an accept being joined

    def authenticated(self) -> None:
        """The peer proved it knows the code: accept frames up to MAX_FRAME."""
        self.max_frame = MAX_FRAME

    def feed(self, frame: object) -> Message | None:
        """One received frame: the message it completes, or None (a part of one)."""
        if not isinstance(frame, bytes):
            raise TransferProtocolError(
                f"expected a binary transfer frame, got {type(frame).__name__}"
            )
        if len(frame) > self.max_frame:
            when = "before proving it knows the code" if self.max_frame < MAX_FRAME else ""
            raise TransferProtocolError(
                f"the other side sent a message of {len(frame)} bytes {when}"
                f" (at most {self.max_frame} allowed): closing"
            )
        kind = frame[:1]
        if kind == b"D":
            if len(frame) <= _DATA_HEADER.size:
                raise TransferProtocolError("a data frame without data")
            _, offset = _DATA_HEADER.unpack_from(frame)
            return Data(offset, memoryview(frame)[_DATA_HEADER.size :])
        if kind == _HEARTBEAT_FRAME and len(frame) == 1:
            return Heartbeat()
        if kind != b"M":
            raise TransferProtocolError(f"unknown transfer frame type {kind!r}")
        try:
            value = msgpack.unpackb(memoryview(frame)[1:], raw=False, use_list=True)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise TransferProtocolError(f"a control message does not decode: {exc}") from None
        message = parse(value)
        more = isinstance(value, Mapping) and value.get("more") is True
        if isinstance(message, Offer):
            return self._join_offer(value, message, more, len(frame))
        if isinstance(message, Accept):
            return self._join_accept(message, more)
        if self._entries is not None or self._resume is not None:
            raise TransferProtocolError(f"{type(message).__name__} inside an unfinished list")
        return message

    def _join_offer(
        self, value: Mapping[str, Any], part: Offer, more: bool, nbytes: int
    ) -> Offer | None:
        if self._entries is None:
            if value.get("v") != PROTOCOL:
                raise TransferProtocolError(
                    f"unsupported transfer protocol {value.get('v')!r}"[:200]
                )
            self._entries, self._offer_bytes = [], 0
        self._entries.extend(part.entries)
        self._offer_bytes += nbytes
        if len(self._entries) > MAX_FILES:
            raise TransferProtocolError(f"an offer lists over {MAX_FILES} entries")
        if self._offer_bytes > MAX_OFFER_BYTES:
            raise TransferProtocolError(
                f"an offer of over {MAX_OFFER_BYTES} bytes (paths too long for their number)"
            )
        if more:
            return None
        entries, self._entries = self._entries, None
        return Offer(tuple(entries))

    def _join_accept(self, part: Accept, more: bool) -> Accept | None:
        self._resume = [*(self._resume or ()), *part.resume]
        if len(self._resume) > MAX_FILES:
            raise TransferProtocolError(f"an accept lists over {MAX_FILES} entries")
        if more:
            return None
        resume, self._resume = self._resume, None
        return Accept(tuple(resume))
