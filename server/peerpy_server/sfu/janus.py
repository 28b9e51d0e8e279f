"""The broker's connection to one Janus: a session with one VideoRoom handle, kept alive.

:class:`JanusAdmin` opens Janus's WebSocket API (``janus-protocol``), creates a
session, attaches the VideoRoom plugin and sends a ``keepalive`` every
:data:`KEEPALIVE` seconds (Janus drops a silent session after its
``session_timeout``, 60 s by default).  Its methods are the VideoRoom requests
a broker needs: create a room (with its secret, PIN and an allowed-token
list), destroy it, add and remove a member's token, list the participants,
kick one or all those shown as a member.  The frames and their matching are
:mod:`peerpy_protocol.janus`'s.

:meth:`JanusAdmin.run` returns (or raises) when the WebSocket closes:
:class:`~peerpy_server.sfu.bridge.Sfu` then counts the instance dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from peerpy_protocol.exceptions import ProtocolError
from peerpy_protocol.janus import (
    ROOM_EXISTS,
    SUBPROTOCOL,
    VIDEOROOM,
    Event,
    JanusCalls,
    JanusError,
    Mode,
    Reply,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

__all__ = ["KEEPALIVE", "REQUEST_TIMEOUT", "JanusAdmin"]

logger: Final = logging.getLogger("peerpy_server.sfu")

JSON = Any
#: Seconds between keepalives.
KEEPALIVE: Final = 20.0
#: Seconds a request may wait for Janus's answer.
REQUEST_TIMEOUT: Final = 5.0


class JanusAdmin:
    """A broker's session on the Janus at ``url`` (see the module docstring)."""

    def __init__(self, url: str, admin_key: str | None) -> None:
        self.url = url
        self._admin_key = admin_key
        self._calls = JanusCalls()
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._ws: ClientConnection | None = None
        self._session: int | None = None
        self._handle: int | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Connect, set up the session and serve requests until the WebSocket closes.

        ``ready`` is set once requests can be made.  Raise :class:`OSError`,
        :class:`JanusError` or websockets' errors if Janus cannot be reached or
        set up.  Cancelling closes the connection.
        """
        async with connect(
            self.url,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            open_timeout=REQUEST_TIMEOUT,
            ping_interval=None,
            max_size=4 * 2**20,
        ) as ws:
            self._ws = ws
            reader = asyncio.ensure_future(self._read(ws))
            try:
                created = await self._call({"janus": "create"})
                self._session = int(created.data["id"])
                attached = await self._call(
                    {"janus": "attach", "plugin": VIDEOROOM, "session_id": self._session}
                )
                self._handle = int(attached.data["id"])
                self.ready.set()
                while not reader.done():
                    done, _ = await asyncio.wait({reader}, timeout=KEEPALIVE)
                    if not done:
                        await self._call({"janus": "keepalive", "session_id": self._session})
                await reader
            finally:
                self.ready.clear()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, ProtocolError):
                    await reader
                self._fail_all(ConnectionError(f"the connection to Janus at {self.url} closed"))
                self._ws = None

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                incoming = self._calls.receive(frame)
                if isinstance(incoming, Reply):
                    future = self._waiting.pop(incoming.transaction, None)
                    if future is not None and not future.done():
                        future.set_result(incoming)
                elif isinstance(incoming, Event) and incoming.kind == "timeout":
                    logger.warning("Janus at %s timed our session out", self.url)
                    return

    def _fail_all(self, error: BaseException) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()

    async def _call(self, message: dict[str, JSON], mode: Mode = "sync") -> Reply:
        """Send one request, return its reply; :class:`JanusError` if Janus refused it.

        Cancelling stops waiting (the request may still be carried out).
        """
        ws = self._ws
        if ws is None:
            raise ConnectionError(f"not connected to Janus at {self.url}")
        transaction, frame = self._calls.request(message, mode)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = future
        try:
            await ws.send(frame)
            reply = await asyncio.wait_for(future, REQUEST_TIMEOUT)
        finally:
            self._waiting.pop(transaction, None)
            self._calls.forget(transaction)
        if reply.error is not None:
            raise reply.error
        return reply

    async def _videoroom(self, body: dict[str, JSON]) -> Reply:
        """A synchronous VideoRoom request on our handle (see :meth:`_call`)."""
        if self._admin_key is not None and body["request"] == "create":
            body = {**body, "admin_key": self._admin_key}
        return await self._call(
            {"janus": "message", "session_id": self._session, "handle_id": self._handle,
             "body": body}
        )  # fmt: skip

    # -- the VideoRoom requests a broker makes -------------------------------

    async def create_room(
        self, room: int, *, secret: str, pin: str, publishers: int, description: str
    ) -> bool:
        """Create VideoRoom ``room`` (not permanent, private, tokens required); ``False`` if it
        existed already.  Cancelling stops waiting."""
        body = {
            "request": "create", "room": room, "permanent": False, "is_private": True,
            "description": description[:64], "secret": secret, "pin": pin,
            "publishers": publishers, "allowed": [], "notify_joining": False,
            "audiocodec": "opus", "videocodec": "vp8", "bitrate": 512_000,
        }  # fmt: skip
        try:
            await self._videoroom(body)
        except JanusError as exc:
            if exc.code == ROOM_EXISTS:
                return False
            raise
        # An empty 'allowed' list may leave the check off: turn it on explicitly.
        await self._videoroom(
            {"request": "allowed", "room": room, "secret": secret, "action": "enable"}
        )
        return True

    async def destroy_room(self, room: int, *, secret: str) -> None:
        """Destroy VideoRoom ``room`` (its participants are told and dropped).  Cancelling stops
        waiting."""
        await self._videoroom({"request": "destroy", "room": room, "secret": secret})

    async def allow(self, room: int, *, secret: str, token: str, allowed: bool) -> None:
        """Add ``token`` to (or remove it from) ``room``'s allowed list.  Cancelling stops
        waiting."""
        action = "add" if allowed else "remove"
        await self._videoroom(
            {"request": "allowed", "room": room, "secret": secret, "action": action,
             "allowed": [token]}
        )  # fmt: skip

    async def participants(self, room: int) -> list[tuple[int, str | None]]:
        """The ``(id, display)`` of each participant of ``room``.  Cancelling stops waiting."""
        listed = await self._videoroom({"request": "listparticipants", "room": room})
        participants = listed.data.get("participants")
        found: list[tuple[int, str | None]] = []
        for participant in participants if isinstance(participants, list) else ():
            if isinstance(participant, dict) and isinstance(participant.get("id"), int):
                display = participant.get("display")
                found.append((participant["id"], display if isinstance(display, str) else None))
        return found

    async def kick(self, room: int, *, secret: str, participant: int) -> None:
        """Kick participant ``participant`` out of ``room``.  Cancelling stops waiting."""
        await self._videoroom(
            {"request": "kick", "room": room, "secret": secret, "id": participant}
        )

    async def kick_display(self, room: int, *, secret: str, display: str) -> int:
        """Kick the participants of ``room`` shown as ``display``; return how many.  Cancelling
        stops waiting."""
        kicked = 0
        for participant, shown in await self.participants(room):
            if shown == display:
                await self.kick(room, secret=secret, participant=participant)
                kicked += 1
        return kicked

    async def aclose(self) -> None:
        """Close the WebSocket (Janus then drops our session).  Not cancellable in practice."""
        ws = self._ws
        if ws is not None:
            await ws.close()
