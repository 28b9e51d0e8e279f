"""The peer's session with the broker: one WebSocket, heartbeats, HTTP look-ups.

:class:`Signaling` opens ``{path}peerjs?key&id&token&version&ext``, waits for
the broker's OPEN, then hands every relayed message to a callback in arrival
order.  ``ext=rooms`` asks for peerpy's extensions: our broker lists those it
has in its OPEN (:attr:`Signaling.extensions`) and then sends their frames
(``ROOM-*``), which go to :attr:`Signaling.on_extension`; PeerJS's ``peer``
ignores the parameter and its OPEN lists none.  Unlike PeerJS (peerjs#55),
nothing sent while the socket is not open is dropped: messages wait in a
bounded queue and go out after the next OPEN.

However the socket ends after OPEN -- a clean close, a reset, EOF, the broker
killed, its ping time-out, a heartbeat that cannot be sent, our keepalive
(:mod:`peerpy.keepalive`: no pong within ``Timeouts.broker_gone``, our own
address gone) -- :meth:`Signaling.run` ends the same way, with
:class:`~peerpy.exceptions.NetworkError` saying why.
No websockets or OS exception escapes: the peer's connections outlive the broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
from aiortc import RTCIceServer
from peerpy_protocol import messages, rooms
from peerpy_protocol.redact import RedactSecrets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from .config import ServerAddress, Timeouts
from .exceptions import (
    InvalidKeyError,
    InvalidTokenError,
    NetworkError,
    ProtocolError,
    ServerError,
    UnavailableIdError,
)
from .keepalive import Keepalive, address_gone

__all__ = ["Signaling"]

#: Version string sent to the broker, as PeerJS sends its own.
CLIENT_VERSION = "1.5.5"
#: Messages kept while the WebSocket is down; a send beyond this raises
#: NetworkError and that message is dropped (those queued stay).
MAX_QUEUED = 1024
#: How the broker's ERROR for a refused token begins (peerpy_server.auth).
INVALID_TOKEN = "Invalid token"
#: Largest frame accepted from the broker.
MAX_FRAME = 1 << 20

#: Called with each relayed message, in arrival order (it must not block).
RelayHandler = Callable[[messages.Relay], None]
#: Called with each frame of an extension (``ROOM-*``), in arrival order (it must not block).
ExtensionHandler = Callable[[messages.Unknown], None]
#: The peerpy extensions this client speaks (``ext=`` in the WebSocket URL).
EXTENSIONS = (rooms.ROOMS_EXT,)

# websockets logs the handshake's request line, token included, at DEBUG.
logging.getLogger("websockets.client").addFilter(RedactSecrets())

#: How a WebSocket session can fail under us: websockets' own errors (closed,
#: protocol violations, handshake) and the OS's (reset, unreachable, EOF).
SOCKET_ERRORS: tuple[type[Exception], ...] = (WebSocketException, OSError, EOFError)
#: A send of the keepalive's that did not complete in time, or failed.
KEEPALIVE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *SOCKET_ERRORS)
#: websockets' keepalive (ping interval and pong time-out, its defaults), used
#: only when ours is off (``Timeouts(broker_gone=None)``).
WEBSOCKETS_PING = 20.0


def _describe(exc: BaseException) -> str:
    """A one-line reason for a lost socket, for logs and NetworkError."""
    if isinstance(exc, NetworkError):  # the keepalive's verdict
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "the broker took no data for Timeouts.broker_gone (a send did not complete)"
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is None and exc.sent is None:
            cause = exc.__cause__ or exc.__context__
            detail = f": {type(cause).__name__}: {cause}" if cause else ""
            return f"the connection to the broker dropped without a close frame{detail}"
        return f"the broker closed the connection ({exc})"
    return f"the connection to the broker failed: {type(exc).__name__}: {exc}"


def _truncate(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class Signaling:
    """A WebSocket session with a PeerJS broker for one peer id."""

    def __init__(
        self,
        address: ServerAddress,
        *,
        timeouts: Timeouts,
        ssl_context: ssl.SSLContext | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.address = address
        self._timeouts = timeouts
        self._ssl = ssl_context
        self._log = logger or logging.getLogger("peerpy.signaling")
        self._socket: ClientConnection | None = None
        self._open = False
        self._queue: deque[str] = deque()
        self._ended = anyio.Event()
        #: Why the current session ended, and whether aclose() ended it.
        self._lost: NetworkError | None = None
        self._closing = False
        #: The extensions the broker's last OPEN announced (e.g. ``{"rooms"}``).
        self.extensions: frozenset[str] = frozenset()
        #: Where frames of those extensions go (set by their owner, e.g. the rooms).
        self.on_extension: ExtensionHandler | None = None

    @property
    def open(self) -> bool:
        """Whether the broker said OPEN on the current socket."""
        return self._open

    # -- HTTP API -----------------------------------------------------------

    async def _get(self, what: str) -> tuple[int, str]:
        url = f"{self.address.base_url}{self.address.key}/{what}"

        def fetch() -> tuple[int, str]:
            request = urllib.request.Request(url, headers={"User-Agent": "peerpy"})
            try:
                with urllib.request.urlopen(
                    request, timeout=self._timeouts.open, context=self._ssl
                ) as response:
                    return response.status, response.read(MAX_FRAME).decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read(MAX_FRAME).decode(errors="replace")

        try:
            return await anyio.to_thread.run_sync(fetch, abandon_on_cancel=True)
        except (OSError, ValueError) as exc:
            raise _unreachable(self.address.base_url, exc) from exc

    async def fetch_id(self) -> str:
        """Ask the broker for a fresh id (``GET {path}{key}/id``).

        Cancelling abandons the request.
        """
        status, body = await self._get("id")
        if status != 200 or not body:
            raise ServerError(f"Could not get an ID from the server (HTTP {status}).")
        return body

    async def list_peers(self) -> list[str]:
        """Ids registered on the broker (``GET {path}{key}/peers``).

        Needs discovery turned on at the broker.  Cancelling abandons the request.
        """
        status, body = await self._get("peers")
        if status == 401:
            raise ServerError(
                "The broker does not allow listing peers: start it with --allow_discovery."
            )
        try:
            peers = json.loads(body) if status == 200 else None
        except ValueError:
            peers = None
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise ServerError(f"Could not get the list of peers (HTTP {status}).")
        return peers

    async def fetch_ice_servers(self, peer_id: str, token: str) -> list[RTCIceServer]:
        """The ICE servers the broker offers this registered peer (``GET {key}/ice``).

        A broker without the endpoint (``peer`` 1.0.2 answers 404) gives
        ``[]``, a malformed answer ``[]`` with a warning.  Raise
        :class:`ServerError` if the broker refuses (401: it does not know this
        id and token, 429, 503...) and :class:`NetworkError` if it cannot be
        reached.  Cancelling abandons the request.
        """
        query = urllib.parse.urlencode({"id": peer_id, "token": token})
        status, body = await self._get(f"ice?{query}")
        if status == 404:
            self._log.debug("the broker offers no ICE servers (HTTP 404)")
            return []
        if status != 200:
            raise ServerError(f"the broker refused our ICE servers request (HTTP {status})")
        try:
            return ice_servers_from_json(json.loads(body))
        except (ValueError, TypeError) as exc:
            self._log.warning("ignoring the broker's malformed ICE servers: %s", exc)
            return []

    # -- WebSocket session --------------------------------------------------

    async def run(
        self,
        peer_id: str,
        token: str,
        on_relay: RelayHandler,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect, wait for OPEN, then read until the socket closes.

        ``task_status.started()`` is called once the broker said OPEN, so
        ``await tg.start(signaling.run, ...)`` returns only when registered, or
        raises :class:`ServerError`, :class:`UnavailableIdError`,
        :class:`InvalidTokenError` (the broker refused the token) or
        :class:`NetworkError`.  After OPEN it returns only once :meth:`aclose`
        closed the socket; every other end (close frame, EOF, reset, a failed
        heartbeat...) raises :class:`NetworkError`.  Cancelling closes the socket.
        """
        url = self.address.websocket_url(peer_id, token, CLIENT_VERSION, EXTENSIONS)
        keepalive = self._timeouts.broker_gone is not None
        self._ended = anyio.Event()
        try:
            with anyio.fail_after(self._timeouts.open):
                # websockets refuses ssl=None with wss://; True is asyncio's
                # default context (system CAs, SSL_CERT_FILE).
                socket = await connect(
                    url,
                    ssl=(self._ssl or True) if self.address.secure else None,
                    compression=None,
                    max_size=MAX_FRAME,
                    open_timeout=None,
                    user_agent_header="peerpy",
                    # websockets' own keepalive (its defaults) only when ours is off.
                    ping_interval=None if keepalive else WEBSOCKETS_PING,
                    ping_timeout=None if keepalive else WEBSOCKETS_PING,
                )
        except TimeoutError:
            raise NetworkError(f"no answer from the broker at {self.address.base_url}") from None
        except SOCKET_ERRORS as exc:
            raise _unreachable(self.address.base_url, exc) from exc
        self._socket = socket
        self._lost = None
        self._closing = False
        try:
            with anyio.fail_after(self._timeouts.open):
                await self._wait_open(socket, peer_id)
            self._open = True
            await self._flush()
            task_status.started()
            # Neither task raises for a lost socket (a task group would wrap the
            # error in an ExceptionGroup): they note why in self._lost and end.
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat, socket)
                await self._read(socket, on_relay)
                tg.cancel_scope.cancel()
        except TimeoutError:
            raise NetworkError("the broker did not say OPEN in time") from None
        except SOCKET_ERRORS as exc:  # lost while waiting for OPEN or flushing the queue
            raise NetworkError(_describe(exc)) from exc
        finally:
            self._open = False
            self._socket = None
            with anyio.CancelScope(shield=True):
                await socket.close()
            # After a close the broker started, Python 3.10's SSL transport can
            # stay open until collected (a ResourceWarning); close it for sure.
            socket.transport.close()
            self._ended.set()
        if not self._closing:
            raise self._lost or NetworkError("the broker closed the connection")

    async def _wait_open(self, socket: ClientConnection, peer_id: str) -> None:
        while True:
            try:
                frame = await socket.recv()
            except SOCKET_ERRORS as exc:
                raise NetworkError(_describe(exc)) from exc
            try:
                message = messages.parse(frame)
            except ProtocolError as exc:
                self._log.warning("ignoring a malformed frame from the broker: %s", exc)
                continue
            if isinstance(message, messages.Open):
                self.extensions = frozenset(EXTENSIONS if rooms.offers_rooms(frame) else ())
                return
            if isinstance(message, messages.IdTaken):
                raise UnavailableIdError(f'ID "{peer_id}" is taken')
            if isinstance(message, messages.InvalidKey) or (
                isinstance(message, messages.ServerErrorMessage)
                and message.msg == "Invalid key provided"
            ):
                raise InvalidKeyError(f'API KEY "{self.address.key}" is invalid')
            if isinstance(message, messages.ServerErrorMessage):
                if message.msg.startswith(INVALID_TOKEN):
                    raise InvalidTokenError(message.msg)
                raise ServerError(message.msg)
            self._log.debug("ignoring %r before OPEN", message)

    def _note_lost(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = NetworkError(_describe(exc))
            self._lost.__cause__ = exc

    async def _read(self, socket: ClientConnection, on_relay: RelayHandler) -> None:
        """Hand relayed messages to ``on_relay`` until the socket ends, however it ends."""
        while True:
            try:
                frame = await socket.recv()
            except SOCKET_ERRORS as exc:  # ConnectionClosedOK included
                self._note_lost(exc)
                return
            try:
                message = messages.parse(frame)
            except (ProtocolError, RecursionError) as exc:
                self._log.warning("ignoring a malformed frame from the broker: %s", exc)
                continue
            if isinstance(message, messages.Relay):
                self._log.debug("<- %s", _truncate(str(frame)))
                try:
                    on_relay(message)
                except Exception:
                    # One bad message must not end the session for every connection.
                    self._log.exception("handling %s failed", _truncate(str(frame)))
            elif isinstance(message, messages.Unknown) and self.on_extension is not None:
                self._log.debug("<- %s", _truncate(str(frame)))
                try:
                    self.on_extension(message)
                except Exception:
                    self._log.exception("handling %s failed", _truncate(str(frame)))
            elif isinstance(message, messages.Open):
                self._log.debug("extra OPEN from the broker")
            else:
                self._log.info("ignoring %r from the broker", message)

    async def _heartbeat(self, socket: ClientConnection) -> None:
        """Send HEARTBEATs and pings, and check our address, as :mod:`peerpy.keepalive`
        says; when the broker counts as gone or a send fails, drop the socket so that
        :meth:`_read` ends too."""
        frame = messages.serialize(messages.Heartbeat())
        gone_after = self._timeouts.broker_gone
        keepalive = Keepalive(
            heartbeat=self._timeouts.heartbeat, gone_after=gone_after, now=anyio.current_time()
        )
        local = socket.transport.get_extra_info("sockname")
        remote = socket.transport.get_extra_info("peername")
        pong: Awaitable[float] | None = None
        while True:
            await anyio.sleep_until(keepalive.next_wake())
            now = anyio.current_time()
            if isinstance(pong, asyncio.Future) and pong.done():
                keepalive.ponged(now)
                pong = None
            tick = keepalive.tick(now)
            gone = tick.gone
            if gone is None and tick.check and local and remote:
                gone = address_gone(local, remote)
            if gone is not None:
                self._note_lost(NetworkError(gone))
                socket.transport.abort()
                return
            try:
                # A send into a full buffer waits: bound it as a pong is.
                with anyio.fail_after(gone_after or math.inf):
                    if tick.heartbeat:
                        await socket.send(frame)
                    if tick.ping:
                        pong = await socket.ping()
            except ConnectionClosed:
                return  # the reader sees the same close
            except KEEPALIVE_ERRORS as exc:
                self._note_lost(exc)
                socket.transport.abort()
                return

    async def send(self, message: messages.Relay) -> None:
        """Send a relayed message, or queue it until the broker says OPEN.

        Raise :class:`NetworkError` if :data:`MAX_QUEUED` messages already
        wait: this one is dropped, those waiting are kept.  Cancelling may
        leave the message unsent.
        """
        await self.send_frame(messages.serialize(message), f"{message.type.value} to {message.dst}")

    async def send_frame(self, frame: str, what: str) -> None:
        """Send a serialized message (``what`` names it in errors) as :meth:`send` does."""
        if self._socket is None or not self._open:
            self._enqueue(frame, what, "not connected to the broker")
            return
        self._log.debug("-> %s", _truncate(frame))
        try:
            await self._socket.send(frame)
        except SOCKET_ERRORS:
            # The session is ending (run() reports why): send it after the next OPEN.
            self._enqueue(frame, what, "lost the broker")

    def _enqueue(self, frame: str, what: str, why: str) -> None:
        """Keep ``frame`` for the next OPEN, or refuse it (NetworkError) past MAX_QUEUED."""
        if len(self._queue) >= MAX_QUEUED:
            raise NetworkError(
                f"{why}, and {MAX_QUEUED} messages already wait for it (the most kept): "
                f"this {what} is dropped; those waiting go out after the next OPEN"
            )
        self._queue.append(frame)

    async def _flush(self) -> None:
        while self._queue and self._socket is not None:
            await self._socket.send(self._queue[0])
            self._queue.popleft()

    async def aclose(self) -> None:
        """Close the WebSocket (the broker unregisters our id) and wait until
        :meth:`run` has finished.  Not cancellable."""
        socket = self._socket
        if socket is not None:
            self._closing = True
            with anyio.CancelScope(shield=True):
                await socket.close()
                await self._ended.wait()


#: Most ICE servers taken from a broker's answer.
MAX_ICE_SERVERS = 8


def ice_servers_from_json(value: object) -> list[RTCIceServer]:
    """Validate a JSON list of ``{urls, username, credential}`` into ``RTCIceServer`` s.

    Raise :class:`ValueError` unless each entry is an object whose ``urls`` is
    a ``stun:``/``turn:`` URL string or a list of them, with string credentials.
    """
    if not isinstance(value, list) or len(value) > MAX_ICE_SERVERS:
        raise ValueError(f"expected a list of at most {MAX_ICE_SERVERS} ICE servers")
    servers = []
    for entry in value:
        if not isinstance(entry, dict):
            raise ValueError(f"an ICE server is an object, got {entry!r:.80}")
        urls = entry.get("urls")
        url_list = [urls] if isinstance(urls, str) else urls
        if (
            not isinstance(url_list, list)
            or not url_list
            or not all(
                isinstance(u, str) and u.startswith(("stun:", "stuns:", "turn:", "turns:"))
                for u in url_list
            )
        ):
            raise ValueError(f"bad ICE server urls {urls!r:.80}")
        username, credential = entry.get("username"), entry.get("credential")
        if not isinstance(username, (str, type(None))) or not isinstance(
            credential, (str, type(None))
        ):
            raise ValueError("ICE server username and credential must be strings")
        servers.append(RTCIceServer(urls=url_list, username=username, credential=credential))
    return servers


def _unreachable(where: str, exc: BaseException) -> NetworkError:
    """One wording for a broker that cannot be reached, whichever request found it."""
    reason: object = getattr(exc, "reason", None) or exc  # urllib wraps the OSError
    errno = getattr(reason, "errno", None)
    text = os.strerror(errno) if isinstance(errno, int) else str(reason)
    return NetworkError(f"cannot reach the broker at {where}: {text}")
