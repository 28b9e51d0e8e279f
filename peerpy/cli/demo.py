"""``peerpy demo``: an embedded broker, two peers, one file, the achieved rate.

Everything stays on this machine: the broker listens on a free port of
127.0.0.1, ICE gathers on 127.0.0.1 only and uses no ICE server (unless the
environment or flags say otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

from ..exceptions import PeerError
from ..transfer import Code, receive_files, send_files
from ..transfer.errors import IntegrityError, TransferUsageError
from .progress import RichProgress, format_size

__all__ = ["run_demo"]

_BLOCK = 1024 * 1024


def _make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256 (hex)."""
    hasher = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(_BLOCK, left))
            hasher.update(block)
            f.write(block)
            left -= len(block)
    return hasher.hexdigest()


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()


@contextlib.asynccontextmanager
async def _broker(server: str | None) -> AsyncIterator[str]:
    """The given broker, or an embedded peerpy_server on 127.0.0.1."""
    if server is not None:
        yield server
        return
    try:
        from peerpy_server import Broker, BrokerConfig
    except ImportError:  # pragma: no cover - depends on the installation
        raise TransferUsageError(
            "peerpy demo runs an embedded broker: install peerpy-server, or pass --server"
        ) from None
    async with Broker(BrokerConfig(host="127.0.0.1", port=0, path="/")) as broker:
        yield broker.url


async def run_demo(
    size: int,
    *,
    console: Console,
    server: str | None = None,
    ice_servers: Sequence[str] | None = None,
    ice_addresses: Sequence[str] | None = None,
) -> float:
    """Send a generated ``size``-byte file between two in-process peers; return bytes/s.

    Cancelling stops the demo and removes its files.
    """
    if size < 0:
        raise TransferUsageError("--size must be positive")
    with tempfile.TemporaryDirectory(prefix="peerpy-demo-") as tmp:
        source = Path(tmp) / "demo.bin"
        console.print(f"generating {format_size(size)} of random data ...")
        digest = await anyio.to_thread.run_sync(_make_file, source, size)
        async with _broker(server) as url:
            console.print(f"broker: {url}")
            peer: dict[str, Any] = {
                "server": url,
                "ice_servers": ice_servers,
                "ice_addresses": ice_addresses,
            }
            codes: list[Code] = []
            ready = anyio.Event()

            def on_code(code: Code) -> None:
                codes.append(code)
                ready.set()

            failures: list[PeerError] = []

            async def sender() -> None:
                try:
                    await send_files([source], on_code=on_code, **peer)
                except PeerError as exc:  # the receiver reports the same failure
                    failures.append(exc)
                    ready.set()

            stats = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(sender)
                await ready.wait()
                if not failures:
                    console.print(f"code: {codes[0]}")
                    try:
                        stats = await receive_files(
                            codes[0],
                            output=Path(tmp) / "received",
                            progress=RichProgress(console, verb="Receiving"),
                            **peer,
                        )
                    except PeerError as exc:  # raised below, outside the task group
                        failures.insert(0, exc)
                        tg.cancel_scope.cancel()
            if stats is None:
                raise failures[0]
        received = Path(tmp) / "received" / "demo.bin"
        if await anyio.to_thread.run_sync(_hash_file, received) != digest:
            raise IntegrityError("the demo file arrived different")  # pragma: no cover
    rate = stats.rate
    console.print(
        f"sent {format_size(size)} in {stats.seconds:.2f} s: "
        f"{format_size(rate)}/s ({rate / 1e6:.1f} MB/s), SHA-256 verified"
    )
    return rate
