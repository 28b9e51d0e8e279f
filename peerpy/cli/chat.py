"""``peerpy chat``: a line-based chat between two peers, on the SDK."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..dataconnection import DataConnection
from ..exceptions import PeerError
from ..peer import Peer

__all__ = ["run_chat"]

ReadLine = Callable[[], Awaitable[str | None]]


async def run_chat(
    peer_id: str,
    remote: str | None,
    *,
    read_line: ReadLine,
    write: Callable[[str], None],
    **peer_kwargs: Any,
) -> None:
    """Register ``peer_id``; talk with ``remote`` (or the first peer that connects).

    Each line from ``read_line()`` (``None`` at end of input) is sent as a
    string; each received value is written as ``"<peer>: <text>"``.  Ends when
    the input ends or the other side leaves.  Cancelling closes the chat.
    """
    async with Peer(peer_id, **peer_kwargs) as peer:
        if remote is None:
            write(f"* waiting for someone to connect to {peer.id} ...")
            conn = await peer.accept()
        else:
            conn = await peer.connect(remote, reliable=True)
        write(f"* connected to {conn.peer}; type lines, end with Ctrl-D")
        failure: PeerError | None = None
        leaving = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_show, conn, write, leaving, tg.cancel_scope)
            try:
                await _type(conn, read_line)
            except PeerError as exc:  # raised after the group, not wrapped in a group
                failure = exc
            leaving.set()
            # Close politely; what the other side sent before still gets shown.
            await conn.close(flush=True)
        if failure is not None:
            raise failure


async def _show(
    conn: DataConnection,
    write: Callable[[str], None],
    leaving: anyio.Event,
    scope: anyio.CancelScope,
) -> None:
    """Print what arrives; end the chat when the other side leaves."""
    try:
        async for value in conn:
            text = value if isinstance(value, str) else repr(value)
            write(f"{conn.peer}: {text}")
    except PeerError as exc:
        write(f"* connection failed: {exc}")
    if not leaving.is_set():
        write(f"* {conn.peer} left")
        scope.cancel()


async def _type(conn: DataConnection, read_line: ReadLine) -> None:
    """Send each input line until the input ends."""
    while (line := await read_line()) is not None:
        line = line.rstrip("\r\n")
        if line and conn.open:
            await conn.send(line)
