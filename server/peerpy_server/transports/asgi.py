"""The ASGI transport: one ASGI ``http`` or ``websocket`` scope served by the broker.

:func:`serve_http` answers a plain request with :func:`~peerpy_server.transports.http.respond`,
the built-in server's HTTP API; :func:`serve_websocket` runs one WebSocket as
an :class:`AsgiSession` (a :class:`~peerpy_server.core.session.Session`, like
the built-in server's connections).  Both reach the broker through its
:class:`~peerpy_server.core.host.Host`.  The public face, lifecycle and the
differences from the built-in server are :mod:`peerpy_server.asgi`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, ClassVar, Final

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..config import normalize_path
from ..core.realm import truncate
from ..core.session import Session
from . import http

if TYPE_CHECKING:
    from ..core.host import Host

__all__ = [
    "NOT_STARTED",
    "AsgiSession",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "serve_http",
    "serve_websocket",
]

logger: Final = logging.getLogger("peerpy_server.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The body of the 503 a request gets before the broker started.
NOT_STARTED: Final = (
    b"peerpy broker not running: start it in the host app's lifespan"
    b" (lifespan=broker_app.lifespan, or async with broker_app)"
)


def _paths(scope: Scope, prefix: str) -> tuple[str, str]:
    """The request's full path and the broker's mount path in it (``root_path`` + ``prefix``).

    Servers and frameworks differ on whether ``scope["path"]`` includes
    ``root_path`` (Starlette's ``Mount`` and uvicorn keep it); both work.
    """
    root = scope.get("root_path", "").rstrip("/")
    path: str = scope["path"]
    if root and not (path == root or path.startswith(root + "/")):
        path = root + path
    return path, normalize_path(root + prefix)


async def serve_http(host: Host, scope: Scope, send: Send) -> None:
    """Answer one ``http`` scope (503 while the broker is not running).

    Cancelling it leaves the request unanswered.
    """
    if not host.running:
        await _respond(send, 503, NOT_STARTED)
        return
    path, mount = _paths(scope, host.config.path)
    query = scope.get("query_string", b"").decode("latin-1")
    headers = Headers(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )
    request = Request(path + "?" + query if query else path, headers)
    # Answered at once, or for /peers and /ice in cluster mode once Redis
    # answered (bounded by its socket timeout, and the lookup's own wait).
    answered: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    def reply(response: Response) -> None:
        if not answered.done():
            answered.set_result(response)

    client = scope.get("client")
    ip = str(client[0]) if client else "?"
    http.respond(request, host.view, reply, ip=ip, method=scope["method"], mount=mount)
    response = await answered
    raw = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.raw_items()
        if name.lower() != "connection"  # the ASGI server's business
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": raw})
    await send({"type": "http.response.body", "body": response.body})


async def serve_websocket(host: Host, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one ``websocket`` scope until the WebSocket is gone.

    Cancelling it cuts the WebSocket.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left during the handshake
    if not host.running:
        await _reject(scope, send, 503, NOT_STARTED)
        return
    path, mount = _paths(scope, host.config.path)
    if path != mount.rstrip("/") + "/peerjs":
        logger.info("WebSocket upgrade on %s refused", truncate(path))
        await _reject(scope, send, 400, b"Bad Request")
        return
    client = scope.get("client")
    session = AsgiSession(host, str(client[0]) if client else "?", send)
    if not host.admit(session):
        await _reject(scope, send, 503, b"Too many connections")
        return
    try:
        await session.run(scope.get("query_string", b"").decode("latin-1"), receive)
    finally:
        session.gone()


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _reject(scope: Scope, send: Send, status: int, body: bytes) -> None:
    """Refuse a WebSocket before its handshake: an HTTP answer if the server can send one."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1013 if status == 503 else 1008})


class AsgiSession(Session):
    """One ASGI WebSocket: a reader task feeding the session, a writer task draining its queue.

    The realm's :meth:`send` is synchronous; frames wait in a queue bounded by
    ``max_write_buffer`` (characters) for the writer, which awaits the ASGI
    server's ``send`` (uvicorn's waits while the socket's buffer is full).  A
    client whose queue passes the bound is cut off, as with the built-in server.
    """

    __slots__ = (
        "_aborted",
        "_accepted",
        "_closing",
        "_ended",
        "_out",
        "_out_size",
        "_registered",
        "_send",
        "_tasks",
        "_wake",
    )

    PINGED: ClassVar[bool] = False  # the ASGI server pings

    def __init__(self, host: Host, ip: str, send: Send) -> None:
        super().__init__(host, ip)
        self._send = send
        self._accepted = False
        self._aborted = False
        self._ended = False
        self._closing: tuple[int, str] | None = None
        self._out: deque[str] = deque()
        self._out_size = 0
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self._tasks: tuple[asyncio.Task[None], ...] = ()

    async def run(self, query: str, receive: Receive) -> None:
        """Accept, register and serve the WebSocket until it is gone.

        Cancelling it (or :meth:`abort`) cuts the WebSocket.
        """
        if self._aborted:
            return
        try:
            await self._send({"type": "websocket.accept"})
        except OSError:  # the client left during the handshake (uvicorn's ClientDisconnected)
            return
        self._accepted = True
        self._host.settled(self)
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write_loop(), name="peerpy_server asgi writer")
        reader = loop.create_task(self._read_loop(query, receive), name="peerpy_server asgi reader")
        self._tasks = (reader, writer)
        try:
            # A cancelled reader (abort) ends the wait; a cancelled handler raises here.
            await asyncio.wait((reader,))
            if not reader.cancelled():
                reader.result()  # a bug in the reader surfaces in the ASGI server's log
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read_loop(self, query: str, receive: Receive) -> None:
        if self.register(query):
            await self._registered.wait()  # cluster mode: nothing is read before the claim
        host = self._host
        limit = host.config.max_message_size
        observe = host.stats.observe
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            self.active = True
            data: str | bytes
            text: str | None = message.get("text")
            if text is not None:
                data = text
                size = len(text)
                if size * 4 > limit:  # more characters than the limit may hide more bytes
                    size = len(text.encode())
            else:
                raw: bytes | None = message.get("bytes")
                if raw is None:
                    continue
                data = raw
                size = len(raw)
            if size > limit:
                self.too_big()
                continue
            start = perf_counter()
            self.message(data)
            observe(perf_counter() - start)

    async def _write_loop(self) -> None:
        send = self._send
        out = self._out
        try:
            while True:
                if out:
                    frame = out.popleft()
                    self._out_size -= len(frame)
                    await send({"type": "websocket.send", "text": frame})
                elif self._closing is not None:
                    code, reason = self._closing
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                else:
                    self._wake = asyncio.Event()
                    await self._wake.wait()
        except OSError:  # the client is gone (uvicorn's ClientDisconnected)
            self.abort()

    # -- the realm's Link, the broker's connection -----------------------------

    def send(self, frame: str) -> bool:
        if self._cut:
            return False
        if self._closing is not None or self._ended:
            return True  # closing: nothing more to deliver, nothing to report
        size = self._out_size + len(frame)
        if size > self._host.config.max_write_buffer:
            self.cut_off()
            return False
        self._out.append(frame)
        self._out_size = size
        self._wake.set()
        return True

    def close(self, code: int | None = None, reason: str = "") -> None:
        if self._closing is not None or self._ended:
            return
        # ASGI has no close frame without a status: 1000 stands for "no status".
        self._closing = (1000 if code is None else code, reason)
        self._wake.set()
        self._host.close_later(self)

    def abort(self) -> None:
        self._aborted = True
        for task in self._tasks:
            task.cancel()

    def attached(self) -> None:
        self._registered.set()  # the reader starts reading

    @property
    def is_websocket(self) -> bool:
        return self._accepted

    def gone(self) -> None:
        self._ended = True
        self._out.clear()
        super().gone()

    @property
    def closing(self) -> bool:
        return self._ended
