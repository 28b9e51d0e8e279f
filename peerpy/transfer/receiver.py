"""The receiving side of one transfer over an open DataConnection.

:func:`receive_over` runs the protocol of :mod:`peerpy.transfer.protocol` over
a :class:`~peerpy.transfer.channel.Channel`: authenticate
(:mod:`peerpy.transfer.auth`) before any file byte, take the offer and check
it (safe names, conflicts, free space), ask the person, accept with the
resume offsets of partial files from earlier runs, then write each file's
data and verify its SHA-256 before it gets its final name.

Memory stays flat: the receiver writes the data to disk in blocks as it
arrives (in a worker thread), only at the offset it expects, so a partial
file is always a prefix of the sender's file; the sender's window bounds what
waits unread.

:mod:`peerpy.transfer.endpoints` wraps this in a Peer for the code-based UX.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from ..dataconnection import DataConnection
from .auth import Code
from .channel import Channel, authenticate, guarded
from .errors import (
    DiskFullError,
    IntegrityError,
    RejectedError,
    TargetExistsError,
    TransferError,
    TransferProtocolError,
)
from .files import PartialFile, StreamSink, Target, hash_prefix, make_folder
from .options import IO_BLOCK, NullProgress, Progress, TransferOptions, TransferStats
from .protocol import (
    Accept,
    Ack,
    Data,
    Done,
    EntryKind,
    FileDone,
    FileEntry,
    FileStart,
    Offer,
    Reject,
    Resume,
)

__all__ = ["Completed", "Confirmer", "accept_all", "receive_over"]

_Sink = PartialFile | StreamSink
Confirmer = Callable[[Offer, int], Awaitable[bool]]
#: Files verified on earlier connections of one transfer: path -> (size, SHA-256, where).
Completed = dict[str, tuple[int, bytes, Path]]


async def accept_all(offer: Offer, already: int) -> bool:
    """A :data:`Confirmer` that accepts every offer (the default, and ``--yes``)."""
    return True


async def receive_over(
    conn: DataConnection,
    code: Code,
    target: Target,
    *,
    confirm: Confirmer = accept_all,
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
    ch = Channel(conn, options or TransferOptions(), "the sender")
    progress = progress or NullProgress()
    receiver = _Receiver(ch, target, progress, {} if completed is None else completed)
    try:
        return await guarded(ch, lambda: receiver.run(code, confirm))
    finally:
        progress.end()


class _Receiver:
    def __init__(
        self, ch: Channel, target: Target, progress: Progress, completed: Completed
    ) -> None:
        self.ch = ch
        self.target = target
        self.progress = progress
        self.completed = completed
        self.received = 0
        self.acked = 0

    async def run(self, code: Code, confirm: Confirmer) -> TransferStats:
        await authenticate(self.ch, code, "receiver")
        offer = await self.ch.expect(Offer)
        done = {
            i: self.completed[e.path]
            for i, e in offer.files
            if e.path in self.completed and self.completed[e.path][0] == e.size
        }
        # Checking every name touches the disk: in a worker thread, so that
        # heartbeats go on for a long or deep offer.
        partials = await anyio.to_thread.run_sync(self._plan, offer, done)
        resume, kept = await self._resumable(partials)
        resume += [Resume(i, size, digest) for i, (size, digest, _) in done.items()]
        already = sum(r.offset for r in resume)
        self._check_space(offer.total_bytes - already)
        try:
            if not await confirm(offer, already):
                raise RejectedError("you declined the offer")
        except RejectedError as exc:
            await self.ch.send(Reject(exc.for_peer or ""))
            raise
        await anyio.to_thread.run_sync(self._make_folders, offer)
        await self.ch.send(Accept(tuple(resume)))
        stats = TransferStats(len(offer.files), offer.total_bytes)
        started = time.monotonic()
        self.progress.begin(offer, already)
        for index, entry in offer.files:
            if index in done:
                stats.paths.append(await self._skip_file(index, entry, done[index]))
            else:
                partial = partials[index]
                final = await self._receive_file(index, partial, kept.get(index, 0))
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

    def _make_folders(self, offer: Offer) -> None:
        """Create the offered folders (in a worker thread), parents first."""
        for entry in offer.entries:
            if entry.kind is EntryKind.DIR and self.target.stdout is None:
                make_folder(self.target.destination(entry))

    async def _resumable(self, partials: dict[int, _Sink]) -> tuple[list[Resume], dict[int, int]]:
        """Hash the partial copies from earlier runs: what we offer to resume, and where."""
        resume, kept = [], {}
        for index, partial in partials.items():
            offset = partial.resumable()
            if offset and isinstance(partial, PartialFile):
                hasher = await anyio.to_thread.run_sync(hash_prefix, partial.partial, offset)
                resume.append(Resume(index, offset, hasher.digest()))
                kept[index] = offset
        return resume, kept

    def _check_space(self, needed: int) -> None:
        root = self.target.root
        while not root.exists():
            root = root.parent
        free = shutil.disk_usage(root).free
        if needed > free:
            raise DiskFullError(f"the transfer needs {needed} bytes but {root} has {free} free")

    async def _receive_file(self, index: int, partial: _Sink, kept: int) -> Path:
        """Receive file ``index`` (resuming after ``kept`` bytes if the sender agrees),
        verify it and give it its final name."""
        # The sender may first hash a long prefix to check a resume: its
        # heartbeats keep the wait alive.
        start = await self.ch.expect(FileStart)
        if start.index != index:
            raise TransferProtocolError(f"expected file {index}, the sender started {start.index}")
        if start.offset not in (0, kept):
            raise TransferProtocolError(f"the sender resumes {partial.entry.path} at a bad offset")
        partial.open(start.offset)
        if kept and not start.offset:
            self.progress.advance(-kept)  # the sender's copy differs: start over
        self.progress.file(partial.entry, start.offset)
        try:
            await self._receive_data(partial)
            done = await self.ch.expect(FileDone)
            if done.index != index:
                raise TransferProtocolError(f"file-done for {done.index} while receiving {index}")
            # A file is hashed as it is on disk once complete (read back after
            # fsync), so "verified" holds for what the person will open; a
            # stream, as it was passed on.
            if done.digest != await anyio.to_thread.run_sync(partial.digest):
                partial.discard()
                what = "the file on disk" if isinstance(partial, PartialFile) else "what arrived"
                raise IntegrityError(
                    f"{partial.entry.path}: {what} does not match the sender's SHA-256 "
                    "(changed on the way, or on disk while it was received); the partial "
                    "copy was deleted, receive again"
                )
            final = await anyio.to_thread.run_sync(partial.commit, self.target)
            if isinstance(partial, PartialFile):  # a stream is sent again in full
                self.completed[partial.entry.path] = (partial.entry.size, done.digest, final)
            return final
        finally:
            partial.close()

    async def _receive_data(self, partial: _Sink) -> None:
        """Take the file's data frames; write them in blocks, in a worker thread.

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
                    await anyio.to_thread.run_sync(_write_blocks, partial, blocks)
                    await self._written(sum(len(b) for b in blocks))
        except BaseException:
            if pending:  # keep the valid prefix for a resume; the first error wins
                with contextlib.suppress(TransferError):
                    _write_blocks(partial, pending)
            raise

    async def _written(self, nbytes: int) -> None:
        """Count ``nbytes`` written; acknowledge every ``ack_every`` bytes."""
        self.received += nbytes
        self.progress.advance(nbytes)
        if self.received - self.acked >= self.ch.options.ack_every:
            self.acked = self.received
            await self.ch.send(Ack(self.received))

    async def _skip_file(self, index: int, entry: FileEntry, done: tuple[int, bytes, Path]) -> Path:
        """A file verified on an earlier connection of this transfer: check it is the same.

        The sender skips it only if its own file still has the digest we
        announced, and says so; a sender whose file changed since sends it
        again from the start, which is refused here too: the copy received
        is not the sender's file any more.
        """
        changed = IntegrityError(
            f"{entry.path} changed on the sender since it was received (on an earlier "
            f"connection of this transfer; that copy is kept as {done[2].name})"
        )
        start = await self.ch.expect(FileStart)
        if start.index == index and start.offset == 0 and entry.size:
            raise changed
        end = await self.ch.expect(FileDone)
        if (start.index, end.index, start.offset) != (index, index, entry.size):
            raise TransferProtocolError(f"the sender resent {entry.path}, received already")
        if end.digest != done[1]:
            raise changed
        return done[2]


def _write_blocks(partial: _Sink, blocks: list[bytes | memoryview]) -> None:
    """Write ``blocks`` to ``partial`` (in a worker thread)."""
    for block in blocks:
        partial.write(block)
