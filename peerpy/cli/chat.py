"""``peerpy chat``: a line-based chat between two peers, or a group chat in a room.

``peerpy chat ID [REMOTE]`` talks with one peer over one data connection;
``peerpy chat [ID] --room NAME [--name NAME]`` joins a room (:mod:`peerpy.room`)
and talks with everyone in it, printing a line when someone joins or leaves.

Input is read from the start, so that the end of the input (Ctrl-D) leaves
even while waiting for the other side; lines typed before it connects are
sent once it does (``echo hi | peerpy chat bob alice`` says hi, then leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..dataconnection import DataConnection
from ..exceptions import NegotiationFailedError, PeerError
from ..peer import Peer
from ..room import Room

__all__ = ["run_chat", "run_room_chat", "stdin_lines"]

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
    the input ends (also while still waiting for the other side: the id is
    released at once) or the other side leaves.  Cancelling closes the chat.
    """
    send, lines = anyio.create_memory_object_stream[str | None](math.inf)
    async with lines, Peer(peer_id, **peer_kwargs) as peer, anyio.create_task_group() as reading:
        reading.start_soon(_read_all, read_line, send)
        if remote is None:
            write(f"* waiting for someone to connect to {peer.id} (Ctrl-D leaves) ...")
        conn, early, ended = await _meet(peer, remote, lines)
        if conn is None:
            write("* input ended: left before anyone connected")
            reading.cancel_scope.cancel()
            return
        write(f"* connected to {conn.peer}; type lines, end with Ctrl-D")
        failure: PeerError | None = None
        leaving = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_show, conn, write, leaving, tg.cancel_scope)
            try:
                await _type(conn, early, None if ended else lines)
            except PeerError as exc:  # raised after the group, not wrapped in a group
                failure = exc
            leaving.set()
            # Close politely; what the other side sent before still gets shown.
            await conn.close(flush=True)
        reading.cancel_scope.cancel()
        if failure is not None:
            raise failure


@contextlib.asynccontextmanager
async def stdin_lines() -> AsyncIterator[ReadLine]:
    """A ``read_line`` for standard input, read by a daemon thread of its own.

    Not a worker thread of the event loop: a person who never presses Enter
    would keep one of those, and with it the process, alive after the chat
    ended (the other side left).  Enter it on the event loop (asyncio).
    """
    loop = asyncio.get_running_loop()
    send, receive = anyio.create_memory_object_stream[str | None](math.inf)

    def deliver(line: str | None) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            send.send_nowait(line)

    def pump() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the chat is over
            try:
                for line in iter(sys.stdin.readline, ""):
                    loop.call_soon_threadsafe(deliver, line)
            except (OSError, ValueError):  # no readable standard input: as if it ended
                pass
            loop.call_soon_threadsafe(deliver, None)

    async def read_line() -> str | None:
        return await receive.receive()

    with send, receive:
        threading.Thread(target=pump, name="peerpy chat input", daemon=True).start()
        yield read_line


async def _read_all(read_line: ReadLine, send: MemoryObjectSendStream[str | None]) -> None:
    """Pass every input line on, then ``None`` at the end of the input."""
    async with send:
        while (line := await read_line()) is not None:
            await send.send(line)
        await send.send(None)


async def _meet(
    peer: Peer, remote: str | None, lines: MemoryObjectReceiveStream[str | None]
) -> tuple[DataConnection | None, list[str], bool]:
    """The open connection (``None`` if the input ended, empty, first), the lines typed
    meanwhile, and whether the input ended."""
    opened: list[DataConnection] = []
    early: list[str] = []
    ended = False
    async with anyio.create_task_group() as tg:

        async def open_connection() -> None:
            if remote is None:
                opened.append(await peer.accept())
            else:
                opened.append(await peer.connect(remote, reliable=True))
            tg.cancel_scope.cancel()

        tg.start_soon(open_connection)
        async for line in lines:
            if line is None:
                # Nothing typed: leave now.  Lines typed (a pipe): deliver them, then leave.
                ended = True
                if not opened and not early:
                    tg.cancel_scope.cancel()
                break
            early.append(line)
    return (opened[0] if opened else None), early, ended


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


async def _type(
    conn: DataConnection, early: list[str], lines: MemoryObjectReceiveStream[str | None] | None
) -> None:
    """Send the lines typed before the connection opened, then each one until the input ends."""
    for typed in early:
        await _say(conn, typed)
    if lines is None:
        return
    async for line in lines:
        if line is None:
            return
        await _say(conn, line)


async def _say(conn: DataConnection, line: str) -> None:
    line = line.rstrip("\r\n")
    if line and conn.open:
        await conn.send(line)


async def run_room_chat(
    peer_id: str | None,
    room_name: str,
    *,
    name: str | None,
    read_line: ReadLine,
    write: Callable[[str], None],
    **peer_kwargs: Any,
) -> None:
    """Join room ``room_name`` as ``peer_id`` (the broker picks one if ``None``); chat there.

    Others see ``name`` (default: the peer id).  Each line from ``read_line()``
    goes to every member; each value received is written as ``"<name>: <text>"``,
    and joins and leaves as ``"* <name> joined"`` / ``"* <name> left"``.  Ends
    when the input ends.  Cancelling leaves the room.
    """
    async with Peer(peer_id, **peer_kwargs) as peer:
        me = name or peer.id or ""
        async with peer.join(room_name, metadata={"name": me}) as room:
            names = {member: _name(member, meta) for member, meta in room.members.items()}
            present = ", ".join(sorted(names.values())) or "nobody else yet"
            write(f"* in room {room_name} as {me} with {present}; type lines, end with Ctrl-D")

            def joined(member: str, metadata: Any) -> None:
                names[member] = _name(member, metadata)
                write(f"* {names[member]} joined")

            room.on("join", joined)
            room.on("leave", lambda member: write(f"* {names.get(member, member)} left"))
            room.on(
                "data", lambda member, value: write(f"{names.get(member, member)}: {_text(value)}")
            )
            await _type_in_room(room, read_line, write)


def _name(member: str, metadata: Any) -> str:
    """The name a member chose (``{"name": ...}`` metadata), else its id."""
    if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
        return f"{metadata['name']}"
    return member


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


async def _type_in_room(room: Room, read_line: ReadLine, write: Callable[[str], None]) -> None:
    """Send each input line to the room until the input ends."""
    while (line := await read_line()) is not None:
        line = line.rstrip("\r\n")
        if not line:
            continue
        try:
            await room.send(line)
        except NegotiationFailedError as exc:  # the others got it
            write(f"* {exc}")
