"""``peerpy demo``: an embedded broker, two peers, one file, the achieved rate.

Everything stays on this machine: the broker listens on a free port of
127.0.0.1, the sender is a ``peerpy send`` child process and the receiver is
this one; ICE gathers on 127.0.0.1 only and uses no ICE server (unless the
environment or flags say otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Final

import anyio
from anyio.abc import Process
from rich.console import Console

from ..transfer import receive_files
from ..transfer.errors import IntegrityError, TransferError, TransferUsageError
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
    key: str | None = None,
    token: str | None = None,
) -> float:
    """Send a generated ``size``-byte file from a sender process to this one; return bytes/s.

    The sender runs ``peerpy send`` in a child process, as it would on another
    machine, so each peer has a CPU of its own.  Cancelling stops the demo,
    stops the child and removes the files.
    """
    if size < 0:
        raise TransferUsageError("--size must be positive")
    with tempfile.TemporaryDirectory(prefix="peerpy-demo-") as tmp:
        source = Path(tmp) / "demo.bin"
        console.print(f"generating {format_size(size)} of random data ...")
        digest = await anyio.to_thread.run_sync(_make_file, source, size)
        async with _broker(server) as url:
            console.print(f"broker: {url}")
            command = [sys.executable, "-m", "peerpy.cli", "send", "--server", url]
            if ice_servers is not None:
                command += ["--ice-servers", ",".join(ice_servers)]
            if ice_addresses is not None:
                command += ["--ice-addresses", ",".join(ice_addresses)]
            if key is not None:
                command += ["--key", key]
            if token is not None:  # a JWT for "*" (both peers), as the receiver's
                command += ["--token", token]
            async with await anyio.open_process(
                [*command, str(source)], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
            ) as sender:
                try:
                    code = await _read_code(sender)
                    console.print(f"code: {code} (sender: process {sender.pid})")
                    stats = await receive_files(
                        code,
                        output=Path(tmp) / "received",
                        progress=RichProgress(console, verb="Receiving"),
                        server=url,
                        ice_servers=ice_servers,
                        ice_addresses=ice_addresses,
                        key=key,
                        token=token,
                    )
                    with anyio.fail_after(_SENDER_EXIT):
                        status = await sender.wait()
                finally:
                    if sender.returncode is None:
                        sender.terminate()
                if status != 0:
                    raise TransferError(f"the sender process failed (exit status {status})")
        received = Path(tmp) / "received" / "demo.bin"
        if await anyio.to_thread.run_sync(_hash_file, received) != digest:
            raise IntegrityError("the demo file arrived different")  # pragma: no cover
    rate = stats.rate
    console.print(
        f"sent {format_size(size)} in {stats.seconds:.2f} s: "
        f"{format_size(rate)}/s ({rate / 1e6:.1f} MB/s), SHA-256 verified"
    )
    return rate


#: Seconds the sender may take to register, and to exit once done.
_SENDER_START: Final = 30.0
_SENDER_EXIT: Final = 30.0


async def _read_code(sender: Process) -> str:
    """Wait for the ``Code: ...`` line the sender prints once it is reachable."""
    assert sender.stdout is not None
    seen = b""
    with anyio.move_on_after(_SENDER_START):
        async for chunk in sender.stdout:
            seen += chunk
            for line in seen.decode(errors="replace").splitlines():
                if line.startswith("Code: "):
                    return line.removeprefix("Code: ").strip()
    errors = b""
    if sender.stderr is not None:
        with anyio.move_on_after(1):
            async for chunk in sender.stderr:
                errors += chunk
    detail = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    raise TransferError(f"the sender process did not start: {detail[0]}")
