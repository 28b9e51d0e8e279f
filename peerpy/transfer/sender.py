"""The sending side of one transfer over an open DataConnection.

:func:`send_over` runs the protocol of :mod:`peerpy.transfer.protocol` over a
:class:`~peerpy.transfer.channel.Channel`: authenticate
(:mod:`peerpy.transfer.auth`) before any file byte, offer, wait for the
receiver's accept (with resume offsets, checked against our own files), then
send each file's data and its SHA-256, and wait for the receiver's ``done``.

Memory stays flat: the sender reads one block at a time and may run at most
``TransferOptions.window`` bytes ahead of what the receiver acknowledged as
written (the data connection's own backpressure bounds the send buffer; the
window bounds the receiver's buffer, which aiortc cannot).  Files are read
and hashed in a worker thread, so the event loop keeps feeding the channel.

:mod:`peerpy.transfer.endpoints` wraps this in a Peer for the code-based UX.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from ..dataconnection import DataConnection
from ..exceptions import PeerError
from .auth import Code
from .channel import Channel, authenticate, guarded
from .errors import (
    PeerVanishedError,
    RejectedError,
    TransferError,
    TransferProtocolError,
)
from .files import Source, hash_prefix
from .options import IO_BLOCK, NullProgress, Progress, TransferOptions, TransferStats
from .protocol import (
    HASH_NAME,
    PAYLOAD_KINDS,
    Accept,
    Ack,
    Data,
    Done,
    FileDone,
    FileStart,
    Offer,
    Reject,
    Resume,
)

__all__ = ["send_over"]


def _declined(reason: str) -> str:
    """The sender's text for a ``reject`` (older receivers sent a fixed reason)."""
    if not reason or reason == "the receiver declined":
        return "the receiver declined the offer"
    return f"the receiver declined the offer ({reason})"


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
    ch = Channel(conn, options or TransferOptions(), "the receiver")
    progress = progress or NullProgress()
    sender = _Sender(ch, sources, progress, on_notice or _ignore)
    try:
        return await guarded(ch, lambda: sender.run(code))
    finally:
        progress.end()


def _ignore(text: str) -> None:
    """Drop a notice."""


class _Sender:
    def __init__(
        self,
        ch: Channel,
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
        await authenticate(self.ch, code, "sender")
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
