"""One TCP connection: the thin I/O layer between asyncio and the realm.

Each accepted socket gets a :class:`Connection`, an
:class:`asyncio.BufferedProtocol` that feeds bytes to a websockets sans-I/O
:class:`~websockets.server.ServerProtocol` and writes what it produces.  There
is no task per connection: everything happens in read callbacks, which keeps
an idle connection at a few KiB and the relay path short (see
``docs/broker.md`` for the figures that led to this choice over websockets'
asyncio server).  Complete data frames are parsed here directly, and the
frames sent while one read is handled are written once per connection.

The first request decides what the connection is: a WebSocket handshake on
``{path}/peerjs`` (then :meth:`Realm.connect`), a WebSocket upgrade elsewhere
(400), or a plain HTTP request answered by :mod:`peerpy_server.http`.

Limits enforced here: request size and time before the handshake, message
size (websockets fails the connection with 1009), the outgoing buffer (a
client that does not read is cut off when its buffer passes
``max_write_buffer``; asyncio's ``pause_writing`` fires synchronously inside
``write``) and the message rate: a token bucket of ``rate_burst`` messages
refilled at ``rate_limit`` per second; a WebSocket that sends faster is closed
with 1008 and unregistered.  The per-address limits are the broker's
(:meth:`Broker.admit`).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Final, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import BytesLike

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

from . import http
from .realm import Client, truncate
from .session import Session

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["Connection"]

logger: Final = logging.getLogger("peerpy_server.connection")
_ws_logger: Final = logging.getLogger("peerpy_server.websocket")

_MAX_REQUEST: Final = 16 * 1024
_TEXT: Final = Opcode.TEXT
_BINARY: Final = Opcode.BINARY
_CONT: Final = Opcode.CONT
_OPEN: Final = State.OPEN
_CONNECTING: Final = State.CONNECTING
_CLOSING: Final = State.CLOSING
#: Most messages handled per read callback; the rest of the read waits for the
#: next event-loop iteration, reading paused meanwhile.  uvloop (libuv) reads a
#: socket up to 32 times per event, so without this one flooding client could
#: hold the loop for a second (8 MiB of tiny frames) before anyone else is served.
MESSAGES_PER_TURN: Final = 1000
#: After a read of this many bytes handled by websockets' (slower) parser,
#: reading pauses for one event-loop iteration.
SLOW_TURN_BYTES: Final = 64 * 1024
_HEADER16: Final = struct.Struct("!BBH")
_HEADER64: Final = struct.Struct("!BBQ")


def _text_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked, final text frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return _HEADER16.pack(0x81, 126, length)
    return _HEADER64.pack(0x81, 127, length)


class Connection(Session, asyncio.BufferedProtocol):
    """An accepted TCP connection (HTTP request or WebSocket); also the realm's link."""

    __slots__ = (
        "_cut",
        "_fragments",
        "_out",
        "_out_size",
        "_partial",
        "_paused",
        "_received",
        "_transport",
        "_ws",
    )

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self._ws = ServerProtocol(max_size=broker.config.max_message_size, logger=_ws_logger)
        self._transport: asyncio.Transport | None = None
        self._cut = False
        self._fragments: list[bytes] | None = None
        self._out: list[bytes] | None = None  # frames gathered by send(), not yet written
        self._out_size = 0
        self._partial = b""
        self._paused = False  # reading paused to resume the backlog in _partial later
        self._received = 0

    # -- asyncio callbacks ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same API.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and peername:
            self.ip = str(peername[0])
        if not self._broker.admit(self):
            transport.abort()
            return
        transport.set_write_buffer_limits(high=self._broker.config.max_write_buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone()

    def pause_writing(self) -> None:
        # The peer is not reading: cut it off rather than buffer more.
        if not self._cut:
            self._cut = True
            self._broker.stats.refuse("slow-reader")
            self._warn("slow-reader", "Cut off %s: it does not read what it is sent", self._name())
            assert self._transport is not None
            self._transport.abort()

    def get_buffer(self, sizehint: int) -> memoryview:
        # A buffered protocol so that asyncio's own loop reads into one
        # buffer shared by all connections: with a plain Protocol it
        # allocates 256 KiB per read (mmap, mremap, munmap: three system
        # calls per read, a sixth of its CPU time at 10 000 clients).
        return self._broker.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copy what was read out of the shared buffer before anything else.
        self.data_received(self._broker.read_buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        """Handle bytes read from the socket."""
        start = perf_counter()
        self.active = True
        ws = self._ws
        state = ws.state
        # Also while closing a socket that has no client any more: the frames it
        # sends before its close frame are skipped here cheaply (a flood cut off
        # by the rate limit), not parsed one by one by websockets.
        if (
            (state is _OPEN or (state is _CLOSING and self._client is None))
            and not ws.reader.buffer
            and self._fragments is None
        ):
            self._fast_frames(data)
        else:
            if self._partial:  # left by the fast path: keep websockets at a frame boundary
                data, self._partial = self._partial + data, b""
            if ws.state is _CONNECTING:
                self._received += len(data)
                if self._received > _MAX_REQUEST:
                    self._warn("large-request", "Request too large from %s; closed", self.ip)
                    self.abort()
                    return
            self._slow_frames(data)
            if len(data) >= SLOW_TURN_BYTES:
                self._yield_turn()  # one large read per loop iteration, not 32
        # What the realm sent while handling this read was gathered per
        # connection (see send); write it now, one system call per connection.
        broker = self._broker
        if broker.unwritten:
            broker.write_gathered()
            broker.stats.observe(perf_counter() - start)

    def _fast_frames(self, data: bytes) -> None:
        """Parse complete, masked, unfragmented text/binary frames here.

        This is the relay's hot path: websockets' generator-based parser costs
        about as much as everything else together.  Anything else (control
        frames, fragments, oversized or invalid frames) and everything after it
        in ``data`` goes to websockets, which then sees whole frames only, so
        its parser stays at a frame boundary.  An incomplete frame waits in
        ``_partial`` (bounded by ``max_message_size``).
        """
        buffer = self._partial + data if self._partial else data
        self._partial = b""
        size = len(buffer)
        broker = self._broker
        limit = broker.config.max_message_size
        # Looked up once per read rather than once per message; ``now`` is
        # the time of the read.  No client: refused or left, the socket is
        # closing and its messages are dropped.
        client = self._client
        receive = broker.realm.receive
        now = broker.now()
        limited = client is not None and self._refill(now)
        pos = 0
        turn = MESSAGES_PER_TURN
        while size - pos >= 2:
            if not turn:
                # Enough for this turn: keep the rest and yield to other clients.
                self._partial = buffer[pos:]
                self._yield_turn()
                return
            turn -= 1
            first, second = buffer[pos], buffer[pos + 1]
            if second < 0x80:
                break  # unmasked: websockets fails the connection
            control = first != 0x81 and first != 0x82
            if control:
                # Pings and pongs are handled here too (a ping flood then meets
                # the rate limit and the turn budget); fragments of a closing
                # socket are skipped.  Anything else goes to websockets.
                opcode = first & 0x0F
                if opcode >= 9:
                    if opcode > 10 or first & 0x70 or first < 0x80 or second & 0x7F > 125:
                        break
                elif client is not None or opcode > 2 or first & 0x70:
                    break
            length = second & 0x7F
            start = pos + 6
            if length == 126:
                start = pos + 8
                length = (buffer[pos + 2] << 8) | buffer[pos + 3]
            elif length == 127:
                start = pos + 14
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
            if length > limit:
                break  # websockets fails the connection with 1009
            end = start + length
            if end > size:
                self._partial = buffer[pos:]
                return
            if client is not None and limited:
                self._tokens -= 1.0
                if self._tokens < 0.0:
                    self._over_rate(client)
                    client = None  # the rest is skipped, as after any close
            if control:
                if first == 0x89 and self._ws.state is _OPEN:
                    self._pong(apply_mask(buffer[start:end], buffer[start - 4 : start]))
            elif client is not None:
                receive(client, apply_mask(buffer[start:end], buffer[start - 4 : start]), now)
            pos = end
        if pos < size:
            if size - pos < 2:
                self._partial = buffer[pos:]
                return
            self._slow_frames(buffer[pos:])

    def _pong(self, payload: bytes) -> None:
        """Answer a ping (what websockets does), after any gathered frames."""
        self.write_out()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(bytes((0x8A, len(payload))) + payload)

    def _yield_turn(self) -> None:
        """Pause reading and handle the backlog in ``_partial`` on the next loop iteration."""
        transport = self._transport
        if transport is None or self._paused:
            return
        self._paused = True
        transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._resume_turn)

    def _resume_turn(self) -> None:
        """Handle more of the backlog, then resume reading once it is gone."""
        self._paused = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self.data_received(b"")  # the backlog waits in _partial
        if not self._paused:
            transport.resume_reading()

    def _slow_frames(self, data: bytes) -> None:
        """Feed websockets' sans-I/O protocol and handle what it parsed."""
        ws = self._ws
        ws.receive_data(data)
        for event in ws.events_received():
            if not isinstance(event, Frame):
                self._handshake(cast(Request, event))
                continue
            client = self._client
            if client is not None and self._refill(self._broker.now()):
                self._tokens -= 1.0  # every frame counts, fragments and control frames too
                if self._tokens < 0.0:
                    self._over_rate(client)
                    continue
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if event.fin:
                    self._message(event.data)
                else:
                    self._fragments = [bytes(event.data)]
            elif opcode is _CONT and self._fragments is not None:
                self._fragments.append(bytes(event.data))
                if event.fin:
                    data, self._fragments = b"".join(self._fragments), None
                    self._message(data)
        self._flush()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    # -- realm Link ------------------------------------------------------

    def send(self, frame: str) -> bool:
        """Send one text frame; ``False`` if this client got cut off (see module doc).

        Frames sent while the broker handles one read are gathered and written
        together once the read is handled (:meth:`Broker.write_gathered`): at
        100 clients a read carries many messages for the same partner, and one
        ``write`` system call per message was a third of the broker's CPU
        time.  Gathering never changes when a client is cut off: it only
        happens while the client's transport buffer is empty and for at most
        ``max_write_buffer`` bytes, so the delayed ``write`` cannot pass the
        limit; otherwise (a client already behind, a huge frame) the frame is
        written at once, as before.
        """
        if self._cut:
            return False
        if self._ws.state is not _OPEN:
            return True  # closing: nothing more to deliver, nothing to report
        transport = self._transport
        if transport is None or transport.is_closing():
            return True
        # Hot path: a server frame is unmasked and never fragmented here, so
        # build it directly instead of going through ServerProtocol.send_text
        # (which holds no state for outgoing data frames).
        payload = frame.encode()
        header = _text_header(len(payload))
        out = self._out
        size = self._out_size + len(header) + len(payload)
        if size <= self._broker.gather_limit:
            if out is not None:
                out += (header, payload)
                self._out_size = size
                return True
            if not transport.get_write_buffer_size():
                self._out = [header, payload]
                self._out_size = size
                self._broker.unwritten.append(self)
                return True
        self.write_out()  # keep the order of frames
        transport.write(header + payload)
        return not self._cut

    def write_out(self) -> None:
        """Write the frames gathered by :meth:`send`, in one system call."""
        out = self._out
        if out is None:
            return
        self._out = None
        self._out_size = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(b"".join(out))

    def close(self, code: int | None = None, reason: str = "") -> None:
        """Start the closing handshake (``code=None``: a close frame with no status)."""
        ws = self._ws
        if ws.state is _OPEN:
            if code is None:
                ws.send_close()
            else:
                ws.send_close(code, reason)
            self._flush()
            self._broker.close_later(self)

    # -- helpers -----------------------------------------------------------

    def ping(self) -> None:
        """Send a WebSocket ping (the broker's timer calls this)."""
        if self._ws.state is _OPEN:
            self._ws.send_ping(b"")
            self._flush()

    @property
    def is_websocket(self) -> bool:
        """Whether the WebSocket handshake completed."""
        return self._ws.state is not State.CONNECTING

    def abort(self) -> None:
        """Drop the TCP connection now."""
        if self._transport is not None:
            self._transport.abort()

    def _message(self, data: BytesLike) -> None:
        client = self._client
        if client is None:
            return  # refused or left: the socket is closing
        self._broker.realm.receive(client, cast(bytes, data), self._broker.now())

    def _over_rate(self, client: Client) -> None:
        self._fragments = None
        super()._over_rate(client)

    def _flush(self) -> None:
        """Write what websockets has to send (after any gathered frames)."""
        self.write_out()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for chunk in self._ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                # websockets signals "close the TCP connection" (server side
                # closes first once the closing handshake is done).
                transport.close()
                return

    def _handshake(self, request: Request) -> None:
        broker = self._broker
        config = broker.config
        path, _, query = request.path.partition("?")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if not upgrade:
            broker.settled(self)
            cluster = broker.cluster
            if cluster is not None and config.allow_discovery and path.endswith("/peers"):
                # The whole cluster's ids come from Redis: answer once they are read.
                def answer(ids: list[str]) -> None:
                    self._ws.send_response(self._respond(request, lambda: ids))
                    self._flush()

                cluster.respond_later(answer)
                return
            self._ws.send_response(self._respond(request, broker.realm.ids))
            return
        if path != config.websocket_path or http.request_method(request) != "GET":
            broker.settled(self)
            logger.info("WebSocket upgrade on %s refused", truncate(request.path))
            self._ws.send_response(http.bad_request())
            return
        broker.settled(self)
        response = self._ws.accept(request)
        self._ws.send_response(response)
        if response.status_code != 101:
            return
        self._flush()
        if broker.cluster is not None:
            # Cluster mode: the claim goes to Redis; read nothing until it is settled.
            assert self._transport is not None
            self._transport.pause_reading()
        self.register(query)

    def claimed(self, client: Client | None) -> None:
        """The cluster claim is settled: attach the client (or not) and read again."""
        transport = self._transport
        if client is not None and (transport is None or transport.is_closing()):
            self._broker.realm.disconnect(client)  # it left while its claim was pending
            return
        self._client = client
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
            if self._partial:  # frames that arrived with the handshake
                self.data_received(b"")

    def _respond(self, request: Request, ids: Callable[[], list[str]]) -> Response:
        broker = self._broker
        return http.respond(
            request,
            broker.config,
            ids,
            broker.realm.__contains__,
            broker.ice_servers,
            broker.health,
            broker.metrics,
        )
