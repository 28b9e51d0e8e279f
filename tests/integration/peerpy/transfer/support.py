"""Shared pieces of the transfer tests: real peer pairs, both sides at once, hashes."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from peerpy_protocol.ids import random_token

from peerpy.dataconnection import DataConnection
from peerpy.exceptions import ConnectionClosedError
from peerpy.peer import Peer
from peerpy.transfer import TransferOptions, endpoints, receive_files, send_files
from peerpy.transfer.auth import Code
from peerpy.transfer.channel import Channel, authenticate
from peerpy.transfer.files import Target
from peerpy.transfer.options import NullProgress
from peerpy.transfer.protocol import PROTOCOL, Accept, EntryKind, FileEntry, FileStart, Offer
from peerpy.transfer.receiver import receive_over
from peerpy.transfer.sender import send_over

from ....helpers.brokers import peerpy_server

FAST = TransferOptions(
    chunk_size=16 * 1024, window=256 * 1024, ack_every=64 * 1024, idle_timeout=10
)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


async def both(*funcs: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the coroutines concurrently; return each result or the exception it raised."""
    results: list[Any] = [None] * len(funcs)

    async def run(i: int) -> None:
        try:
            results[i] = await funcs[i]()
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(funcs)):
            tg.start_soon(run, i)
    return results


async def transfer(url: str, paths: list[Path], out: Path, code: str, **receive: Any) -> list[Any]:
    """Run send_files and receive_files (once the sender is registered) together."""
    ready = anyio.Event()
    peer = {"server": url}

    async def sender() -> Any:
        return await send_files(
            paths, code=code, on_code=lambda c: ready.set(), options=FAST, **peer
        )

    async def receiver() -> Any:
        await ready.wait()
        return await receive_files(code, output=out, options=FAST, **peer, **receive)

    return await both(sender, receiver)


@contextlib.asynccontextmanager
async def pair(
    url: str, backends: tuple[str, str] | None = None
) -> AsyncIterator[tuple[DataConnection, DataConnection]]:
    """(sender side, receiver side) of one transfer-style data connection.

    ``backends``: the receiver's and the sender's, the receiver offering as in a
    transfer (default: PEERPY_BACKEND's for both)."""
    tok = random_token()
    receiving, sending = backends or (None, None)
    async with (
        Peer("s" + tok, server=url, backend=sending) as s,
        Peer("r" + tok, server=url, backend=receiving) as r,
    ):
        conn = await r.connect(
            s.id or "", serialization="raw", reliable=True, metadata={"protocol": PROTOCOL}
        )
        yield await s.accept(), conn


async def round_trip_over(
    code: Code,
    sources: Any,
    out: Path,
    options: TransferOptions,
    backends: tuple[str, str] | None = None,
    **receive: Any,
) -> tuple[Any, Any]:
    """send_over and receive_over on a fresh :func:`pair` (see its ``backends``);
    both must succeed."""
    async with peerpy_server() as url, pair(url, backends) as (s, r):
        with anyio.fail_after(60):
            sent, got = await both(
                lambda: send_over(s, code, sources, options=options),
                lambda: receive_over(r, code, Target(out), options=options, **receive),
            )
    assert not isinstance(sent, Exception), sent
    assert not isinstance(got, Exception), got
    return sent, got


class ConnectionCutter(NullProgress):
    """Receiver progress that cuts the first transfer connection once ``at`` bytes
    went through (after ``before_cut()``); records every connection the receiver
    opens (install with :meth:`install`)."""

    def __init__(self, at: int, before_cut: Callable[[], Any] = lambda: None) -> None:
        self.at = at
        self.before_cut = before_cut
        self.seen = 0
        self.conns: list[DataConnection] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ConnectionCutter:
        """Record the receiver's connections (endpoints._connect) from now on."""
        real_connect = endpoints._connect

        async def recording(peer: Peer, code: Code) -> DataConnection:
            self.conns.append(await real_connect(peer, code))
            return self.conns[-1]

        monkeypatch.setattr(endpoints, "_connect", recording)
        return self

    def advance(self, nbytes: int) -> None:
        self.seen += nbytes
        if self.seen >= self.at and len(self.conns) == 1 and not self.conns[0].closed:
            self.before_cut()
            self.conns[0]._fail(ConnectionClosedError("cut by the test"))


async def offer_one_file(
    conn: DataConnection, code: Code, size: int, options: TransferOptions = FAST
) -> Channel:
    """A hand-driven sender: authenticate, offer ``f.bin`` of ``size`` bytes, take the
    accept and start the file at 0; the caller sends what it likes next."""
    ch = Channel(conn, options)
    await authenticate(ch, code, "sender")
    await ch.send(Offer((FileEntry("f.bin", EntryKind.FILE, size),)))
    await ch.expect(Accept)
    await ch.send(FileStart(0, 0))
    return ch


#: The options of :func:`hostile_offer` and of the tests that play a hostile sender.
HOSTILE = TransferOptions(idle_timeout=5)


async def hostile_offer(tmp_path: Path, entries: list[FileEntry]) -> BaseException | None:
    """An authenticated sender offers ``entries``; return what receive_over raised."""
    code = Code(9, ("a", "b"))
    result: dict[str, BaseException | None] = {}
    async with peerpy_server() as url:
        tok = random_token()
        async with Peer("s" + tok, server=url) as sp, Peer("r" + tok, server=url) as rp:

            async def sender() -> None:
                conn = await sp.accept()
                ch = Channel(conn, HOSTILE)
                with contextlib.suppress(Exception):
                    await authenticate(ch, code, "sender")
                    await ch.send(Offer(tuple(entries)))
                    await ch.recv(10)

            async def receiver() -> None:
                conn = await rp.connect(
                    sp.id or "", serialization="raw", reliable=True, metadata={"protocol": PROTOCOL}
                )
                try:
                    await receive_over(conn, code, Target(tmp_path / "out"), options=HOSTILE)
                    result["error"] = None
                except Exception as exc:
                    result["error"] = exc

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender)
                    tg.start_soon(receiver)
    return result["error"]
