"""A member's WebSocket to Janus: one session, its requests, its keepalives and its events.

The SDK's side of :mod:`peerpy_protocol.janus` (which matches frames to
requests without I/O).  :func:`open_session` connects to Janus's WebSocket API
(``janus-protocol``), creates a session and, while its block runs, reads the
socket (replies wake their requests, events go to ``on_event``) and sends a
``keepalive`` every :data:`KEEPALIVE` seconds.  When Janus closes the socket
or stops answering keepalives, the block is cancelled and ``async with`` ends
quietly: the caller tells a lost Janus from its own exit by its own state.

:class:`JanusSession` makes the requests: :meth:`~JanusSession.call` (any
verb), :meth:`~JanusSession.attach` (a VideoRoom handle) and
:meth:`~JanusSession.message` (a VideoRoom request, perhaps with JSEP).
:mod:`peerpy.rooms.sfu` uses them to publish and subscribe.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from aiortc.exceptions import InvalidStateError
from peerpy_protocol.janus import SUBPROTOCOL, VIDEOROOM, Event, JanusCalls, Mode, Reply
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

from ..exceptions import NetworkError, PeerError, ProtocolError

__all__ = ["FAILURES", "KEEPALIVE", "JanusSession", "open_session"]

JSON = Any
#: Seconds between keepalives (Janus drops a silent session after 60 s by default).
KEEPALIVE = 20.0
#: What talking to Janus may raise (InvalidStateError: a peer connection closed under a
#: negotiation, when the session ended meanwhile).
FAILURES = (OSError, WebSocketException, PeerError, TimeoutError, InvalidStateError)


class JanusSession:
    """One WebSocket to Janus and its session: requests and their replies."""

    def __init__(self, ws: ClientConnection, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.calls = JanusCalls()
        self.waiting: dict[str, tuple[anyio.Event, list[Reply]]] = {}
        #: Janus's session id (0 until created).
        self.id = 0

    async def call(self, message: dict[str, JSON], mode: Mode = "sync") -> Reply:
        """Send a request and return its reply; :class:`JanusError` if refused,
        :class:`NetworkError` if not answered in time.  Cancelling stops waiting."""
        if self.id:
            message = {"session_id": self.id, **message}
        transaction, frame = self.calls.request(message, mode)
        done: tuple[anyio.Event, list[Reply]] = (anyio.Event(), [])
        self.waiting[transaction] = done
        try:
            await self.ws.send(frame)
            with anyio.move_on_after(self.timeout):
                await done[0].wait()
        finally:
            self.waiting.pop(transaction, None)
            self.calls.forget(transaction)
        if not done[1]:
            raise NetworkError(f"Janus did not answer {message.get('janus')} in {self.timeout:g} s")
        reply = done[1][0]
        if reply.error is not None:
            raise reply.error
        return reply

    def answered(self, reply: Reply) -> None:
        """Wake the request ``reply`` answers."""
        done = self.waiting.get(reply.transaction)
        if done is not None:
            done[1].append(reply)
            done[0].set()

    async def attach(self) -> int:
        """Attach a VideoRoom handle; return its id.  Cancelling stops waiting."""
        reply = await self.call({"janus": "attach", "plugin": VIDEOROOM})
        return int(reply.data["id"])

    async def message(
        self, handle: int, body: dict[str, JSON], jsep: dict[str, JSON] | None = None
    ) -> Reply:
        """A VideoRoom request that may carry JSEP (answered by an event).  Cancelling stops
        waiting."""
        request: dict[str, JSON] = {"janus": "message", "handle_id": handle, "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        return await self.call(request, "async")


@contextlib.asynccontextmanager
async def open_session(
    url: str, *, request_timeout: float, on_event: Callable[[Event], None], logger: logging.Logger
) -> AsyncIterator[JanusSession]:
    """Connect to Janus at ``url`` and create a session (see the module docstring); each
    request then waits ``request_timeout`` seconds at most for its answer.

    Raise what :data:`FAILURES` lists if Janus cannot be reached, refuses or
    closes the connection first.  Cancelling closes the WebSocket (Janus then
    drops the session).
    """
    failure: BaseException | None = None
    async with connect(
        url, subprotocols=[Subprotocol(SUBPROTOCOL)], open_timeout=10, ping_interval=None,
        max_size=4 * 2**20,
    ) as ws:  # fmt: skip
        session = JanusSession(ws, request_timeout)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, session, on_event, logger, url, tg.cancel_scope)
            try:
                created = await session.call({"janus": "create"})
                session.id = int(created.data["id"])
            except FAILURES as exc:  # raised below, not from inside the task group
                failure = exc
            else:
                tg.start_soon(_keepalive, session, tg.cancel_scope)
                yield session
            tg.cancel_scope.cancel()
    if not session.id:
        raise failure or NetworkError(f"Janus at {url} closed the connection")


async def _keepalive(session: JanusSession, scope: anyio.CancelScope) -> None:
    try:
        while True:
            await anyio.sleep(KEEPALIVE)
            await session.call({"janus": "keepalive"})
    except FAILURES:
        scope.cancel()


async def _read(
    session: JanusSession,
    on_event: Callable[[Event], None],
    logger: logging.Logger,
    url: str,
    scope: anyio.CancelScope,
) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for frame in session.ws:
            try:
                incoming = session.calls.receive(frame)
            except ProtocolError as exc:
                logger.warning("bad frame from Janus at %s: %s", url, exc)
                continue
            if isinstance(incoming, Reply):
                session.answered(incoming)
            elif isinstance(incoming, Event):
                on_event(incoming)
    scope.cancel()  # Janus closed the connection
