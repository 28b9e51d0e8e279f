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
listening socket, and each WebSocket is a :class:`~peerpy_server.core.session.Session`
like the built-in server's connections (the transport itself is
:mod:`peerpy_server.transports.asgi`).

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

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from .broker import Broker
from .config import BrokerConfig
from .transports.asgi import Receive, Scope, Send, serve_http, serve_websocket

__all__ = ["BrokerApp", "Receive", "Scope", "Send"]

logger: Final = logging.getLogger("peerpy_server.asgi")


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

    async def __aexit__(self, *exc_info: object) -> None:
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
            await serve_http(self.broker, scope, send)
        elif kind == "websocket":
            await serve_websocket(self.broker, scope, receive, send)
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
