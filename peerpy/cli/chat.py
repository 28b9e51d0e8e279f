"""``peerpy chat``: a line-based chat between two peers, or a group chat in a room.

``peerpy chat ID [REMOTE]`` talks with one peer over one data connection;
``peerpy chat [ID] --room NAME [--name NAME]`` joins a room (:mod:`peerpy.room`)
and talks with everyone in it, printing a line when someone joins or leaves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..dataconnection import DataConnection
from ..exceptions import NegotiationFailedError, PeerError
from ..peer import Peer
from ..room import Room

__all__ = ["run_chat", "run_room_chat"]

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
