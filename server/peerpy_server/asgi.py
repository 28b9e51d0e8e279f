"""The broker as an ASGI application, to mount in a Starlette or FastAPI app.

What ``ExpressPeerServer`` is to an Express app, :class:`BrokerApp` is to an
ASGI app: everything ``peerpy-server`` serves (the banner, ``{key}/id``,
``{key}/peers``, ``{key}/ice``, ``health``, ``metrics``, CORS, and the PeerJS
WebSocket at ``peerjs``), under the path it is mounted at::

    from contextlib import asynccontextmanager
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from peerpy_server import BrokerConfig
    from peerpy_server.asgi import BrokerApp

    peers = BrokerApp(BrokerConfig(allow_discovery=True))
    app = Starlette(routes=[Mount("/signal", app=peers)], lifespan=peers.lifespan)
    # uvicorn module:app --ws websockets-sansio  ->  new Peer({path: "/signal"})

The broker is plain ASGI 3 (no framework dependency) and runs on asyncio.  The
protocol logic is the built-in server's: the same :class:`~peerpy_server.broker.Broker`
(realm, limits, timers, cluster mode, JWT, metrics) is started without a
listening socket, and each WebSocket is a :class:`~peerpy_server.session.Session`
like the built-in server's connections.

Lifespan: Starlette does not forward lifespan events to mounted apps, so the
host app starts the broker in its own lifespan: ``lifespan=peers.lifespan``,
or ``async with peers:`` inside a lifespan of its own.  As the top-level app
(``uvicorn peerpy_server.asgi:app``-style) :class:`BrokerApp` handles the
``lifespan`` scope itself.  A request that arrives before the broker started
(or after it stopped) gets 503.

Differences from the built-in server, all due to ASGI:

* the ASGI server parses HTTP and WebSocket frames, and pings: set its
  WebSocket ping (uvicorn: ``ws_ping_interval``/``ws_ping_timeout``), and its
  message size limit to ``max_message_size`` (uvicorn: ``ws_max_size``) so that
  an oversized frame is refused before it is buffered; the app closes a
  larger message with 1009 in any case;
* ASGI cannot send a close frame without a status: a refused WebSocket (ERROR,
  ID-TAKEN) is closed with 1000 where the built-in server sends no status (1005);
* a WebSocket refused before its handshake (wrong path: 400, not started or a
  connection limit: 503) gets that HTTP answer when the server supports the
  ``websocket.http.response`` extension (uvicorn does), else 403;
* paths outside the mount are the host app's (Starlette: 404, WebSocket 403);
* the per-address limits count WebSockets only (HTTP requests are the ASGI
  server's), with the address the ASGI server reports (``scope["client"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from time import perf_counter
from types import TracebackType
from typing import Any, ClassVar, Final

from websockets.datastructures import Headers
from websockets.http11 import Request

from . import http
from .broker import Broker
from .config import BrokerConfig, normalize_path
from .realm import Client, truncate
from .session import Session

__all__ = ["BrokerApp", "Receive", "Scope", "Send"]

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


class BrokerApp:
    """A PeerJS broker as an ASGI 3 application (see the module docstring).

    ``config``'s ``host``, ``port`` and TLS options are the ASGI server's
    business and ignored here; ``config.path`` is a prefix inside the mount
    (default ``/``: the mount path is the PeerJS ``path``).
    """

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config if config is not None else BrokerConfig()
        #: The broker behind the app (its realm, limits, timers, cluster link).
        self.broker = Broker(self.config)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the broker's timers (and ``--stun``, cluster mode); no socket is bound.

        Cancelling it leaves nothing running.
        """
        await self.broker.start(listen=False)

    async def aclose(self) -> None:
        """Close every WebSocket (1001) and stop the broker; idempotent.

        Cancelling it cuts the remaining WebSockets at once.
        """
        await self.broker.aclose()

    async def __aenter__(self) -> BrokerApp:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Run the broker while the host app runs: ``Starlette(..., lifespan=app.lifespan)``.

        ``app`` (the host app, passed by Starlette and FastAPI) is not used.
        """
        async with self:
            yield

    @property
    def running(self) -> bool:
        """Whether the broker is started (requests are served)."""
        return self.broker.running

    # -- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """The top-level app's lifespan: start on startup, stop on shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    logger.exception("The broker did not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _paths(self, scope: Scope) -> tuple[str, str]:
        """The request's full path and the broker's mount path in it (``root_path`` + ``path``).

        Servers and frameworks differ on whether ``scope["path"]`` includes
        ``root_path`` (Starlette's ``Mount`` and uvicorn keep it); both work.
        """
        root = scope.get("root_path", "").rstrip("/")
        path: str = scope["path"]
        if root and not (path == root or path.startswith(root + "/")):
            path = root + path
        return path, normalize_path(root + self.config.path)

    async def _http(self, scope: Scope, send: Send) -> None:
        broker = self.broker
        if not broker.running:
            await _respond(send, 503, NOT_STARTED)
            return
        path, mount = self._paths(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        )
        request = Request(path + "?" + query if query else path, headers)
        ids: Callable[[], list[str]] = broker.realm.ids
        cluster = broker.cluster
        if cluster is not None and self.config.allow_discovery and path.endswith("/peers"):
            # The whole cluster's ids come from Redis (bounded by its socket timeout).
            answered: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

            def answer(found: list[str]) -> None:
                if not answered.done():
                    answered.set_result(found)

            cluster.respond_later(answer)
            found = await answered
            ids = found.copy
        response = http.respond(
            request,
            self.config,
            ids,
            broker.realm.__contains__,
            broker.ice_servers,
            broker.health,
            broker.metrics,
            method=scope["method"],
            mount=mount,
        )
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.raw_items()
            if name.lower() != "connection"  # the ASGI server's business
        ]
        await send({"type": "http.response.start", "status": response.status_code, "headers": raw})
        await send({"type": "http.response.body", "body": response.body})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left during the handshake
        broker = self.broker
        if not broker.running:
            await _reject(scope, send, 503, NOT_STARTED)
            return
        path, mount = self._paths(scope)
        if path != mount.rstrip("/") + "/peerjs":
            logger.info("WebSocket upgrade on %s refused", truncate(path))
            await _reject(scope, send, 400, b"Bad Request")
            return
        client = scope.get("client")
        link = _WebSocket(broker, str(client[0]) if client else "?", send)
        if not broker.admit(link):
            await _reject(scope, send, 503, b"Too many connections")
            return
        try:
            await link.run(scope.get("query_string", b"").decode("latin-1"), receive)
        finally:
            link.gone()


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


class _WebSocket(Session):
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
        "_cut",
        "_ended",
        "_out",
        "_out_size",
        "_registered",
        "_send",
        "_tasks",
        "_wake",
    )

    PINGED: ClassVar[bool] = False  # the ASGI server pings

    def __init__(self, broker: Broker, ip: str, send: Send) -> None:
        super().__init__(broker, ip)
        self._send = send
        self._accepted = False
        self._aborted = False
        self._ended = False
        self._cut = False
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
        broker = self._broker
        if self._aborted:
            return
        try:
            await self._send({"type": "websocket.accept"})
        except OSError:  # the client left during the handshake (uvicorn's ClientDisconnected)
            return
        self._accepted = True
        broker.settled(self)
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
        broker = self._broker
        limit = broker.config.max_message_size
        observe = broker.stats.observe
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
        if size > self._broker.config.max_write_buffer:
            self._cut = True
            self._broker.stats.refuse("slow-reader")
            self._warn("slow-reader", "Cut off %s: it does not read what it is sent", self._name())
            self.abort()
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
        self._broker.close_later(self)

    def abort(self) -> None:
        self._aborted = True
        for task in self._tasks:
            task.cancel()

    @property
    def is_websocket(self) -> bool:
        return self._accepted

    def claimed(self, client: Client | None) -> None:
        if client is not None and self._ended:
            self._broker.realm.disconnect(client)  # it left while its claim was pending
            return
        self._client = client
        self._registered.set()

    def gone(self) -> None:
        self._ended = True
        self._out.clear()
        super().gone()
