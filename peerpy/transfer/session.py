"""The async sender and receiver of one transfer over an open DataConnection.

:func:`send_over` and :func:`receive_over` run the protocol of
:mod:`peerpy.transfer.protocol` on a reliable (ordered) data connection:
authenticate (:mod:`peerpy.transfer.auth`) before any file byte, then offer,
accept (with resume offsets), file data and verification.

Memory stays flat on both sides: the sender reads one chunk at a time and may
run at most ``TransferOptions.window`` bytes ahead of what the receiver
acknowledged as written (the data connection's own backpressure bounds the
send buffer; the window bounds the receiver's buffer, which aiortc cannot);
the receiver writes each chunk to disk as it arrives, only at the offset it
expects, so a partial file is always a prefix of the sender's file.

Liveness: each side sends a heartbeat after ``heartbeat_interval`` seconds
without sending anything, and counts the other side as gone after
``idle_timeout`` seconds without receiving anything (killed, frozen or cut
off).  Cancelling either side (Ctrl-C) sends an ``error`` message with code
``stopped`` before returning, so the other side learns at once that it was on
purpose (:class:`~peerpy.transfer.errors.StoppedError`).

:mod:`peerpy.transfer.endpoints` wraps these in Peers for the code-based UX.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import anyio
import attrs

from ..dataconnection import DataConnection
from ..exceptions import ConnectionClosedError, PeerError
from ..route import Route
from . import errors
from .auth import Code, Handshake, Role, connection_fingerprints
from .errors import (
    DiskFullError,
    IntegrityError,
    PeerVanishedError,
    RejectedError,
    RemoteError,
    StoppedError,
    TargetExistsError,
    TransferError,
    TransferProtocolError,
    TransferUsageError,
)
from .files import PartialFile, Source, StreamSink, Target, hash_prefix, make_folder
from .protocol import (
    HASH_NAME,
    MAX_CHUNK,
    PAYLOAD_KINDS,
    Accept,
    Ack,
    Confirm,
    Data,
    Decoder,
    Done,
    EntryKind,
    Error,
    FileDone,
    FileEntry,
    FileStart,
    Heartbeat,
    Message,
    Offer,
    Pake,
    Reject,
    Resume,
    encode,
)

__all__ = [
    "Completed",
    "Confirmer",
    "NullProgress",
    "Progress",
    "TransferOptions",
    "TransferStats",
    "receive_over",
    "send_over",
]

M = TypeVar("M")

#: File bytes read, hashed or written per worker-thread call (whole chunks).
IO_BLOCK = 1024 * 1024


@attrs.frozen
class TransferOptions:
    """Tuning of a transfer (both sides may differ)."""

    #: File bytes per data message (at most :data:`~peerpy.transfer.protocol.MAX_CHUNK`).
    chunk_size: int = MAX_CHUNK
    #: The sender stays at most this many bytes ahead of the receiver's acks.
    window: int = 8 * 1024 * 1024
    #: The receiver acknowledges after this many bytes written.
    ack_every: int = 1024 * 1024
    #: Silence (no message) after which the other side counts as gone, in seconds.
    idle_timeout: float = 3.0
    #: A heartbeat goes out after this long without sending anything, in seconds.
    heartbeat_interval: float = 1.0
    #: How long the sender waits for the receiver's person to accept.
    decision_timeout: float = 600.0
    #: After a lost connection, how long the sender waits for the receiver to
    #: come back (same code) to resume, in seconds.
    reconnect_wait: float = 30.0
    #: How long a side that stops waits for its last message to reach the other.
    stop_grace: float = 1.5

    def __attrs_post_init__(self) -> None:
        if not 0 < self.chunk_size <= MAX_CHUNK:
            raise TransferUsageError(f"chunk_size must be 1..{MAX_CHUNK}, not {self.chunk_size}")
        if not 0 < self.heartbeat_interval < self.idle_timeout:
            raise TransferUsageError("heartbeat_interval must be positive and below idle_timeout")


class Progress(Protocol):
    """Receives progress reports (the CLI draws bars with rich)."""

    def begin(self, offer: Offer, already: int) -> None:
        """The transfer starts; ``already`` bytes were there from an earlier run."""

    def file(self, entry: FileEntry, offset: int) -> None:
        """``entry`` starts at ``offset``."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes went through."""

    def end(self) -> None:
        """The transfer ended (successfully or not)."""


class NullProgress:
    """Progress that shows nothing."""

    def begin(self, offer: Offer, already: int) -> None:
        """Nothing."""

    def file(self, entry: FileEntry, offset: int) -> None:
        """Nothing."""

    def advance(self, nbytes: int) -> None:
        """Nothing."""

    def end(self) -> None:
        """Nothing."""


@attrs.define
class TransferStats:
    """What a finished transfer moved."""

    files: int = 0
    total_bytes: int = 0
    #: File bytes that crossed the connection in this run.
    transferred_bytes: int = 0
    #: Bytes kept from an earlier interrupted run.
    resumed_bytes: int = 0
    seconds: float = 0.0
    #: Where the received files went (receiver only; ``-`` for standard output).
    paths: list[Path] = attrs.Factory(list)
    #: Texts received (``peerpy send --text``; receiver only).
    texts: list[str] = attrs.Factory(list)
    #: The route the connection took (see :mod:`peerpy.route`).
    route: Route | None = None

    @property
    def rate(self) -> float:
        """Bytes per second over the connection in this run."""
        return self.transferred_bytes / self.seconds if self.seconds > 0 else 0.0


_REMOTE_ERRORS: dict[str, type[TransferError]] = {
    cls.type: cls
    for cls in (
        errors.AuthenticationError,
        errors.ManInTheMiddleError,
        errors.IntegrityError,
        errors.DiskFullError,
        errors.TargetExistsError,
        errors.UnsafePathError,
        errors.TransferProtocolError,
        errors.StoppedError,
    )
}


class _Channel:
    """Transfer messages over a DataConnection, with liveness and clear errors."""

    def __init__(
        self, conn: DataConnection, options: TransferOptions, other: str = "the other side"
    ) -> None:
        self.conn = conn
        self.options = options
        #: How messages name the peer: "the sender" or "the receiver".
        self.other = other
        self.decoder = Decoder()
        self.authenticated = False
        self.last_sent = time.monotonic()

    def set_authenticated(self) -> None:
        """The peer proved the code: lift the pre-authentication frame limit."""
        self.authenticated = True
        self.decoder.authenticated()

    async def send(self, message: Message) -> None:
        """Send one message.

        Each frame is one data-channel message, queued whole or not at all:
        cancelling never leaves a message half sent.
        """
        for frame in encode(message):
            try:
                await self.conn.send(frame)
            except PeerError as exc:
                raise PeerVanishedError(f"{self.other} went away: {exc}") from None
            self.last_sent = time.monotonic()

    async def recv(self, limit: float | None = None) -> Message:
        """The next message other than a heartbeat; raise on silence, close or ``error``.

        Each wait for a frame is bounded by ``idle_timeout``; ``limit`` bounds
        the whole wait (heartbeats keep a waiting peer alive, not forever).
        Cancelling loses nothing.
        """
        if limit is None:  # the data path: no cancel scope per message
            return await self._next()
        with anyio.move_on_after(limit):
            return await self._next()
        raise TransferError(f"{self.other} did not answer within {limit:g} s")

    async def _next(self) -> Message:
        while True:
            message = self.decoder.feed(await self._frame())
            if message is None or isinstance(message, Heartbeat):
                continue
            if isinstance(message, Error):
                cls = _REMOTE_ERRORS.get(message.code, RemoteError)
                raise cls(f"{self.other} stopped: {message.message}")
            return message

    async def _frame(self) -> Any:
        idle = self.options.idle_timeout
        started = time.monotonic()
        try:
            while True:
                try:
                    with anyio.fail_after(idle):
                        return await self.conn.recv()
                except TimeoutError:
                    if not self._may_resume(time.monotonic() - started):
                        raise
        except TimeoutError:
            raise PeerVanishedError(
                f"{self.other} sent nothing for {idle:g} s (killed, suspended or cut off)"
            ) from None
        except ConnectionClosedError:
            raise PeerVanishedError(
                f"{self.other} closed the connection before the transfer finished"
            ) from None

    def _may_resume(self, silent: float) -> bool:
        """Whether a silence may be a lost path the connection resumes (wait on) or not.

        A resumable connection (see :mod:`peerpy.generation`) is silent while it
        resumes, and for up to :attr:`~peerpy.DataConnection.path_loss_bound`
        before it notices the path is dead; it fails by itself if it cannot resume.
        """
        bound = self.conn.path_loss_bound
        return self.conn.reconnecting or (bound is not None and silent < bound)

    async def expect(self, kind: type[M], limit: float | None = None) -> M:
        """The next message, which must be a ``kind``.  Cancelling loses nothing."""
        message = await self.recv(limit)
        if not isinstance(message, kind):
            name = type(message).__name__
            raise TransferProtocolError(f"expected {kind.__name__}, {self.other} sent {name}")
        return message

    async def beat(self) -> None:
        """Send a heartbeat whenever nothing else went out for ``heartbeat_interval``."""
        interval = self.options.heartbeat_interval
        while True:
            await anyio.sleep(max(0.0, self.last_sent + interval - time.monotonic()))
            if time.monotonic() - self.last_sent >= interval:
                try:
                    await self.send(Heartbeat())
                except PeerVanishedError:
                    return  # the receiving side reports it

    async def report(self, exc: BaseException) -> None:
        """Tell the other side why we stop (best effort, bounded).  Not cancellable."""
        if not isinstance(exc, TransferError) or isinstance(exc, PeerVanishedError):
            return
        if isinstance(exc, RemoteError | RejectedError | StoppedError):
            return
        await self.say_last(Error(exc.type, exc.for_peer or str(exc)))

    async def say_last(self, message: Message) -> None:
        """Send a last message and give it ``stop_grace`` seconds to arrive.

        The other side closes once it has read it; closing ours first could
        drop it.  Shielded from cancellation, bounded in time.
        """
        with anyio.move_on_after(self.options.stop_grace, shield=True):
            with contextlib.suppress(PeerError):
                await self.send(message)
                await self.conn.wait_closed()


async def _authenticate(ch: _Channel, code: Code, role: Role) -> None:
    """PAKE + fingerprint confirmation; raise AuthenticationError on mismatch."""
    local, remote = connection_fingerprints(ch.conn.peer_connection)
    handshake = Handshake(code, role, local, remote)
    await ch.send(handshake.start())
    confirm = handshake.on_pake(await ch.expect(Pake))
    await ch.send(confirm)
    handshake.on_confirm(await ch.expect(Confirm))
    ch.set_authenticated()


async def _with_heartbeat(ch: _Channel, body: Callable[[], Awaitable[M]]) -> M:
    """Run ``body`` while heartbeats go out; raise what it raised (no exception group)."""
    result: list[M] = []
    failure: list[Exception] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.beat)
        try:
            result.append(await body())
        except Exception as exc:
            failure.append(exc)
        finally:
            tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return result[0]


async def _guarded(ch: _Channel, body: Callable[[], Awaitable[M]]) -> M:
    """Run ``body``; on a transfer error or cancellation, tell the other side, then raise."""
    try:
        return await _with_heartbeat(ch, body)
    except PeerVanishedError as exc:
        exc.after_auth = ch.authenticated
        raise
    except TransferError as exc:
        await ch.report(exc)
        raise
    except anyio.get_cancelled_exc_class():
        # Stopped on purpose (Ctrl-C, SIGTERM, the caller's timeout): say so.
        await ch.say_last(Error(StoppedError.type, "it was interrupted (Ctrl-C or a signal)"))
        raise


def _declined(reason: str) -> str:
    """The sender's text for a ``reject`` (older receivers sent a fixed reason)."""
    if not reason or reason == "the receiver declined":
        return "the receiver declined the offer"
    return f"the receiver declined the offer ({reason})"


# -- sender -----------------------------------------------------------------------


async def send_over(
    conn: DataConnection,
    code: Code,
    sources: list[Source],
    *,
    progress: Progress | None = None,
    options: TransferOptions | None = None,
    on_notice: Callable[[str], Any] | None = None,
) -> TransferStats:
    """Send ``sources`` (from :func:`~peerpy.transfer.files.build_manifest`) over ``conn``.

    Returns once the receiver verified every file.  Raise
    :class:`AuthenticationError` before any file byte if the receiver does not
    know ``code`` or the connection is intercepted, :class:`RejectedError` if
    it declines, :class:`StoppedError` if it stops on purpose,
    :class:`PeerVanishedError` if it goes away or stays silent for
    ``idle_timeout``.  ``on_notice`` hears one-line news (a resume, a restarted
    file).  Cancelling tells the receiver the sender stopped (bounded by
    ``stop_grace``); the receiver keeps its partial files.
    """
    ch = _Channel(conn, options or TransferOptions(), "the receiver")
    progress = progress or NullProgress()
    sender = _Sender(ch, sources, progress, on_notice or _ignore)
    try:
        return await _guarded(ch, lambda: sender.run(code))
    finally:
        progress.end()


def _ignore(text: str) -> None:
    """Drop a notice."""


class _Sender:
    def __init__(
        self,
        ch: _Channel,
        sources: list[Source],
        progress: Progress,
        notice: Callable[[str], Any],
    ) -> None:
        self.ch = ch
        self.sources = sources
        self.progress = progress
        self.notice = notice
        self.offer = Offer(tuple(s.entry for s in sources))
        self.sent = 0
        self.acked = 0
        self.acked_event = anyio.Event()
        self.done = anyio.Event()
        self.watching = anyio.Event()
        self.error: PeerError | None = None
        self.stats = TransferStats(len(self.offer.files), self.offer.total_bytes)

    async def run(self, code: Code) -> TransferStats:
        await _authenticate(self.ch, code, "sender")
        await self.ch.send(self.offer)
        reply = await self.ch.recv(self.ch.options.decision_timeout)
        if isinstance(reply, Reject):
            raise RejectedError(_declined(reply.reason))
        if not isinstance(reply, Accept):
            raise TransferProtocolError(f"expected accept, got {type(reply).__name__}")
        resume = {r.index: r for r in reply.resume}
        started = time.monotonic()
        self.progress.begin(self.offer, sum(r.offset for r in reply.resume))
        # The watcher reads acks, done and errors; on a failure or silence it
        # cancels the sending, which may be waiting for room in the channel.
        failure: PeerError | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, tg.cancel_scope)
            try:
                await self._send_all(resume)
            except PeerError as exc:
                failure = exc
            tg.cancel_scope.cancel()
        if self.error is not None and (failure is None or isinstance(failure, PeerVanishedError)):
            raise self.error  # the receiver said why, or went silent first
        if failure is not None:
            raise failure
        self.stats.transferred_bytes = self.sent
        self.stats.seconds = time.monotonic() - started
        return self.stats

    async def _send_all(self, resume: dict[int, Resume]) -> None:
        """Send every file, then wait for the receiver's final done."""
        try:
            for index, source in enumerate(self.sources):
                if source.entry.kind in PAYLOAD_KINDS:
                    await self._send_file(index, source, resume.get(index))
            await self.done.wait()
        except PeerVanishedError:
            # The receiver may have said why before closing: let the watcher read it.
            with anyio.move_on_after(1):
                await self.watching.wait()
            raise
        self._check()

    async def _watch(self, scope: anyio.CancelScope) -> None:
        """Take acks and the final done; on an error keep it and stop the sending."""
        try:
            while True:
                message = await self.ch.recv()
                if isinstance(message, Ack):
                    self.acked = max(self.acked, message.received)
                    self.acked_event.set()
                elif isinstance(message, Done):
                    self.done.set()
                    return
                else:
                    name = type(message).__name__
                    raise TransferProtocolError(f"unexpected {name} from the receiver")
        except PeerError as exc:
            self.error = exc
            scope.cancel()
        finally:
            self.watching.set()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    async def _room(self, nbytes: int) -> None:
        """Wait until sending ``nbytes`` more keeps us within the window.

        The watcher cancels this wait if the receiver fails or goes silent.
        """
        window = self.ch.options.window
        while self.sent + nbytes - self.acked > window:
            self.acked_event = anyio.Event()
            await self.acked_event.wait()

    async def _send_file(self, index: int, source: Source, resume: Resume | None) -> None:
        entry, path = source.entry, source.path
        offset, hasher = 0, hashlib.new(HASH_NAME)
        if resume is not None and path is not None and 0 < resume.offset <= entry.size:
            prefix = await anyio.to_thread.run_sync(hash_prefix, path, resume.offset)
            if prefix.digest() == resume.prefix_hash:
                offset, hasher = resume.offset, prefix
                self.stats.resumed_bytes += offset
            else:
                self.notice(
                    f"the receiver's partial copy of {entry.path} differs from this file: "
                    "sending it again from the start"
                )
                self.progress.advance(-resume.offset)  # restart this file from zero
        await self.ch.send(FileStart(index, offset))
        self.progress.file(entry, offset)
        size = self.ch.options.chunk_size
        # Read and hash whole chunks in blocks of about IO_BLOCK bytes, in a
        # worker thread: the event loop keeps feeding the data channel
        # meanwhile (hashlib and file reads release the GIL).
        block_size = max(size, IO_BLOCK // size * size)
        position = offset
        opened = io.BytesIO(source.data) if source.data is not None else _open(path)
        with opened as f:
            f.seek(offset)
            while position < entry.size:
                want = min(block_size, entry.size - position)
                if source.data is None:
                    block = await anyio.to_thread.run_sync(_read_hashed, f, hasher, want)
                else:
                    block = _read_hashed(f, hasher, want)
                if len(block) < want:
                    raise TransferError(f"{path} shrank while it was being sent")
                view = memoryview(block)
                for start in range(0, want, size):
                    piece = view[start : start + size]
                    await self._room(len(piece))
                    await self.ch.send(Data(position, piece))
                    position += len(piece)
                    self.sent += len(piece)
                self.progress.advance(want)
        await self.ch.send(FileDone(index, hasher.digest()))


def _read_hashed(f: BinaryIO, hasher: Any, nbytes: int) -> bytes:
    """Read up to ``nbytes`` (fewer only at the end of the file) and hash them."""
    block = f.read(nbytes)
    while 0 < len(block) < nbytes:
        more = f.read(nbytes - len(block))
        if not more:
            break
        block += more
    hasher.update(block)
    return block


def _open(path: Path | None) -> BinaryIO:
    assert path is not None
    return path.open("rb")


# -- receiver ---------------------------------------------------------------------

_Sink = PartialFile | StreamSink
Confirmer = Callable[[Offer, int], Awaitable[bool]]
#: Files verified on earlier connections of one transfer: path -> (size, SHA-256, where).
Completed = dict[str, tuple[int, bytes, Path]]


async def _yes(offer: Offer, already: int) -> bool:
    return True


async def receive_over(
    conn: DataConnection,
    code: Code,
    target: Target,
    *,
    confirm: Confirmer = _yes,
    progress: Progress | None = None,
    options: TransferOptions | None = None,
    completed: Completed | None = None,
    on_notice: Callable[[str], Any] | None = None,
) -> TransferStats:
    """Receive an offer over ``conn`` into ``target``.

    ``confirm(offer, resumable_bytes)`` decides whether to accept (ask the
    person).  Raise :class:`AuthenticationError` if the sender does not know
    ``code`` or the connection is intercepted, :class:`UnsafePathError` for
    a name that would escape the target, :class:`TargetExistsError`,
    :class:`DiskFullError`, :class:`IntegrityError` for a hash mismatch and
    :class:`PeerVanishedError` if the sender goes away; partial files then
    keep their ``.peerpy-partial`` suffix for a later resume.  ``completed``
    remembers the files verified so far, so that a reconnection after a lost
    connection skips them (pass the same dict again).  Data is written only
    at the offset expected next, so a partial file is always a prefix of the
    sender's file.  Cancelling tells the sender the receiver stopped (bounded
    by ``stop_grace``) and keeps the partial files.
    """
    ch = _Channel(conn, options or TransferOptions(), "the sender")
    progress = progress or NullProgress()
    receiver = _Receiver(ch, target, progress, {} if completed is None else completed)
    try:
        return await _guarded(ch, lambda: receiver.run(code, confirm))
    finally:
        progress.end()


class _Receiver:
    def __init__(
        self, ch: _Channel, target: Target, progress: Progress, completed: Completed
    ) -> None:
        self.ch = ch
        self.target = target
        self.progress = progress
        self.completed = completed
        self.received = 0
        self.acked = 0

    async def run(self, code: Code, confirm: Confirmer) -> TransferStats:
        await _authenticate(self.ch, code, "receiver")
        offer = await self.ch.expect(Offer)
        done = {
            i: self.completed[e.path]
            for i, e in offer.files
            if e.path in self.completed and self.completed[e.path][0] == e.size
        }
        partials = self._plan(offer, done)
        resume, hashers = await self._resumable(partials)
        resume += [Resume(i, size, digest) for i, (size, digest, _) in done.items()]
        already = sum(r.offset for r in resume)
        self._check_space(offer.total_bytes - already)
        try:
            if not await confirm(offer, already):
                raise RejectedError("you declined the offer")
        except RejectedError as exc:
            await self.ch.send(Reject(exc.for_peer or ""))
            raise
        for entry in offer.entries:
            if entry.kind is EntryKind.DIR and self.target.stdout is None:
                make_folder(self.target.destination(entry))
        await self.ch.send(Accept(tuple(resume)))
        stats = TransferStats(len(offer.files), offer.total_bytes)
        started = time.monotonic()
        self.progress.begin(offer, already)
        for index, entry in offer.files:
            if index in done:
                stats.paths.append(await self._skip_file(index, entry, done[index]))
            else:
                partial = partials[index]
                final = await self._receive_file(index, partial, hashers.get(index))
                if isinstance(partial, StreamSink) and partial.out is None:
                    stats.texts.append(bytes(partial.held).decode(errors="replace"))
                else:
                    stats.paths.append(final)
        await self.ch.say_last(Done())
        stats.transferred_bytes = self.received
        stats.resumed_bytes = offer.total_bytes - self.received
        stats.seconds = time.monotonic() - started
        return stats

    def _plan(self, offer: Offer, done: Completed | dict[int, Any]) -> dict[int, _Sink]:
        texts = sum(1 for e in offer.entries if e.kind is EntryKind.TEXT)
        if texts and len(offer.entries) != 1:
            # A text is held in memory: one per offer keeps that to MAX_TEXT.
            raise TransferProtocolError("a text must be the only entry of its offer")
        stdout = self.target.stdout
        count = sum(1 for _, e in offer.files if e.kind is EntryKind.FILE)
        if stdout is not None and count != 1:
            raise TransferError(
                f"--stdout takes exactly one file, the sender offers {count}"
            ).telling_peer(
                "it receives to its standard output, which takes exactly one file "
                "(send one, or a tar stream with `peerpy send -`)"
            )
        partials: dict[int, _Sink] = {}
        for i, e in offer.files:
            if e.kind is EntryKind.TEXT:
                partials[i] = StreamSink(e, None)
            elif stdout is not None:
                partials[i] = StreamSink(e, stdout)
            elif i not in done:
                partials[i] = PartialFile(self.target.destination(e), e)
        seen: set[str] = set()
        for entry in offer.entries:
            self.target.destination(entry)  # refuse unsafe names before anything
            if entry.path in seen:
                raise TransferProtocolError(f"the offer lists {entry.path!r} twice")
            seen.add(entry.path)
        if self.target.conflict == "refuse":
            mine = {e.path for i, e in offer.files if i in done}
            existing = [path for path in self.target.conflicts(offer) if path not in mine]
            if existing:
                shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
                raise TargetExistsError(
                    f"would overwrite {len(existing)} existing file(s): {shown}; "
                    "use --overwrite or --rename"
                ).telling_peer(
                    f"its folder already holds {len(existing)} file(s) of those names: "
                    f"{shown} (it can receive again with --overwrite or --rename)"
                )
        return partials

    async def _resumable(
        self, partials: dict[int, _Sink]
    ) -> tuple[list[Resume], dict[int, tuple[int, Any]]]:
        """Hash the partial copies from earlier runs: what we offer to resume."""
        resume, prefixes = [], {}
        for index, partial in partials.items():
            offset = partial.resumable()
            if offset and isinstance(partial, PartialFile):
                hasher = await anyio.to_thread.run_sync(hash_prefix, partial.partial, offset)
                resume.append(Resume(index, offset, hasher.digest()))
                prefixes[index] = (offset, hasher)
        return resume, prefixes

    def _check_space(self, needed: int) -> None:
        root = self.target.root
        while not root.exists():
            root = root.parent
        free = shutil.disk_usage(root).free
        if needed > free:
            raise DiskFullError(f"the transfer needs {needed} bytes but {root} has {free} free")

    async def _receive_file(
        self, index: int, partial: _Sink, prefix: tuple[int, Any] | None
    ) -> Path:
        # The sender may first hash a long prefix to check a resume: its
        # heartbeats keep the wait alive.
        start = await self.ch.expect(FileStart)
        if start.index != index:
            raise TransferProtocolError(f"expected file {index}, the sender started {start.index}")
        kept = prefix[0] if prefix is not None else 0
        if start.offset not in (0, kept):
            raise TransferProtocolError(f"the sender resumes {partial.entry.path} at a bad offset")
        hasher = prefix[1] if prefix is not None and start.offset else hashlib.new(HASH_NAME)
        partial.open(start.offset)
        if kept and not start.offset:
            self.progress.advance(-kept)  # the sender's copy differs: start over
        self.progress.file(partial.entry, start.offset)
        try:
            await self._receive_data(partial, hasher)
            done = await self.ch.expect(FileDone)
            if done.index != index:
                raise TransferProtocolError(f"file-done for {done.index} while receiving {index}")
            if done.digest != hasher.digest():
                partial.discard()
                raise IntegrityError(
                    f"{partial.entry.path}: the received bytes do not match the sender's "
                    f"{HASH_NAME}; the partial copy was deleted, receive again"
                )
            final = await anyio.to_thread.run_sync(partial.commit, self.target)
            if isinstance(partial, PartialFile):  # a stream is sent again in full
                self.completed[partial.entry.path] = (partial.entry.size, done.digest, final)
            return final
        finally:
            partial.close()

    async def _receive_data(self, partial: _Sink, hasher: Any) -> None:
        """Take the file's data frames; write and hash them in blocks, in a worker thread.

        A block is written once it reaches ``min(IO_BLOCK, ack_every)`` bytes
        or the end of the file; the data connection keeps receiving into its
        buffer meanwhile.  On any failure the contiguous bytes already taken
        are written before raising, so the partial file stays a prefix.
        """
        size = partial.entry.size
        expected = partial.written
        flush_at = min(IO_BLOCK, self.ch.options.ack_every)
        pending: list[bytes | memoryview] = []
        held = 0
        try:
            while expected < size:
                data = await self.ch.expect(Data)
                if data.offset != expected:
                    raise TransferProtocolError(
                        f"{partial.entry.path}: data at offset {data.offset}, expected "
                        f"{expected}: not contiguous"
                    )
                nbytes = len(data.data)
                if expected + nbytes > size:
                    raise TransferError(f"{partial.entry.path}: more bytes than the offered {size}")
                pending.append(data.data)
                held += nbytes
                expected += nbytes
                if held >= flush_at or expected == size:
                    blocks, pending, held = pending, [], 0
                    await anyio.to_thread.run_sync(_write_hashed, partial, hasher, blocks)
                    await self._written(sum(len(b) for b in blocks))
        except BaseException:
            if pending:  # keep the valid prefix for a resume; the first error wins
                with contextlib.suppress(TransferError):
                    _write_hashed(partial, hasher, pending)
            raise

    async def _written(self, nbytes: int) -> None:
        """Count ``nbytes`` written; acknowledge every ``ack_every`` bytes."""
        self.received += nbytes
        self.progress.advance(nbytes)
        if self.received - self.acked >= self.ch.options.ack_every:
            self.acked = self.received
            await self.ch.send(Ack(self.received))

    async def _skip_file(self, index: int, entry: FileEntry, done: tuple[int, bytes, Path]) -> Path:
        """A file verified on an earlier connection of this transfer: check it is the same."""
        start = await self.ch.expect(FileStart)
        end = await self.ch.expect(FileDone)
        if (start.index, end.index, start.offset) != (index, index, entry.size):
            raise TransferProtocolError(f"the sender resent {entry.path}, received already")
        if end.digest != done[1]:
            raise IntegrityError(f"{entry.path} changed on the sender since it was received")
        return done[2]


def _write_hashed(partial: _Sink, hasher: Any, blocks: list[bytes | memoryview]) -> None:
    """Write ``blocks`` to ``partial`` and hash them (in a worker thread)."""
    for block in blocks:
        partial.write(block)
        hasher.update(block)
