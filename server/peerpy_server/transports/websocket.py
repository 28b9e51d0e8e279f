"""The built-in server's transport: one TCP connection, between asyncio and the realm.

Each accepted socket gets a :class:`TcpSession`, an
:class:`asyncio.BufferedProtocol` (and a :class:`~peerpy_server.core.session.Session`)
that feeds bytes to a websockets sans-I/O
:class:`~websockets.server.ServerProtocol` and writes what it produces.  There
is no task per connection: everything happens in read callbacks, which keeps
an idle connection at a few KiB and the relay path short (see
``docs/broker.md`` for the figures that led to this choice over websockets'
asyncio server).  Complete data frames are parsed here directly, and the
frames sent while one read is handled are written once per connection; the
read buffer and the list of connections holding gathered frames are shared by
all of a broker's connections (:class:`Gathering`).

The first request decides what the connection is: a WebSocket handshake on
``{path}/peerjs`` (then :meth:`Realm.connect`), a WebSocket upgrade elsewhere
(400), or a plain HTTP request answered by :mod:`peerpy_server.transports.http`.

Limits enforced here: request size and time before the handshake, message
size (websockets fails the connection with 1009), the outgoing buffer (a
client that does not read is cut off when its buffer passes
``max_write_buffer``; asyncio's ``pause_writing`` fires synchronously inside
``write``) and the message rate (:meth:`Session.spend`, counted per frame).
The per-address limits are the broker's (:mod:`peerpy_server.core.admission`);
the broker is reached through its :class:`~peerpy_server.core.host.Host`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
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

from ..core.realm import Client, truncate
from ..core.session import Session
from . import http

if TYPE_CHECKING:
    from ..core.host import Host

__all__ = ["GATHER_LIMIT", "READ_BUFFER", "Gathering", "TcpSession"]

logger: Final = logging.getLogger("peerpy_server.connection")
_ws_logger: Final = logging.getLogger("peerpy_server.websocket")

#: Size of the read buffer shared by all connections (asyncio reads this much at most).
READ_BUFFER: Final = 256 * 1024
#: Most bytes of frames gathered for one connection before they are written.
GATHER_LIMIT: Final = 64 * 1024
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


class Gathering:
    """What a broker's connections share: one read buffer, and who holds gathered frames."""

    __slots__ = ("limit", "read_buffer", "unwritten")

    def __init__(self, max_write_buffer: int) -> None:
        #: Where every connection reads (see :meth:`TcpSession.get_buffer`).
        self.read_buffer = memoryview(bytearray(READ_BUFFER))
        #: Connections holding frames gathered by :meth:`TcpSession.send`.
        self.unwritten: list[TcpSession] = []
        #: At most this many bytes are gathered per connection (see TcpSession.send).
        self.limit = min(GATHER_LIMIT, max_write_buffer)

    def write(self) -> None:
        """Write the frames gathered for each connection (see :meth:`TcpSession.send`)."""
        while self.unwritten:
            unwritten, self.unwritten = self.unwritten, []
            for connection in unwritten:
                connection.write_out()


class TcpSession(Session, asyncio.BufferedProtocol):
    """An accepted TCP connection (HTTP request or WebSocket); also the realm's link."""

    __slots__ = (
        "_fragments",
        "_gathering",
        "_out",
        "_out_size",
        "_partial",
        "_paused",
        "_received",
        "_transport",
        "_ws",
    )

    def __init__(self, host: Host, gathering: Gathering) -> None:
        super().__init__(host)
        self._gathering = gathering
        self._ws = ServerProtocol(max_size=host.config.max_message_size, logger=_ws_logger)
        self._transport: asyncio.Transport | None = None
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
        if not self._host.admit(self):
            transport.abort()
            return
        transport.set_write_buffer_limits(high=self._host.config.max_write_buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone()

    def pause_writing(self) -> None:
        # The peer is not reading: cut it off rather than buffer more.
        if not self._cut:
            self.cut_off()

    def get_buffer(self, sizehint: int) -> memoryview:
        # A buffered protocol so that asyncio's own loop reads into one
        # buffer shared by all connections: with a plain Protocol it
        # allocates 256 KiB per read (mmap, mremap, munmap: three system
        # calls per read, a sixth of its CPU time at 10 000 clients).
        return self._gathering.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copy what was read out of the shared buffer before anything else.
        self.data_received(self._gathering.read_buffer[:nbytes].tobytes())

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
        gathering = self._gathering
        if gathering.unwritten:
            gathering.write()
            self._host.stats.observe(perf_counter() - start)

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
        host = self._host
        limit = host.config.max_message_size
        # Looked up once per read rather than once per message; ``now`` is
        # the time of the read.  No client: refused or left, the socket is
        # closing and its messages are dropped.
        client = self._client
        receive = host.realm.receive
        now = host.now()
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
            if client is not None and not self.spend(now):
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
            # Every frame counts, fragments and control frames too.
            if self._client is not None and not self.spend(self._host.now()):
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
        together once the read is handled (:meth:`Gathering.write`): at
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
        gathering = self._gathering
        if size <= gathering.limit:
            if out is not None:
                out += (header, payload)
                self._out_size = size
                return True
            if not transport.get_write_buffer_size():
                self._out = [header, payload]
                self._out_size = size
                gathering.unwritten.append(self)
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
            self._host.close_later(self)

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

    @property
    def closing(self) -> bool:
        """Whether the TCP connection is gone or closing."""
        transport = self._transport
        return transport is None or transport.is_closing()

    def attached(self) -> None:
        """The cluster claim is settled: read again (reading paused in :meth:`_handshake`)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()
            if self._partial:  # frames that arrived with the handshake
                self.data_received(b"")

    def _message(self, data: BytesLike) -> None:
        client = self._client
        if client is None:
            return  # refused or left: the socket is closing
        self._host.realm.receive(client, cast(bytes, data), self._host.now())

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
        host = self._host
        path, _, query = request.path.partition("?")
        host.settled(self)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            http.respond(request, host.view, self._reply, ip=self.ip)
            return
        if path != host.config.websocket_path or http.request_method(request) != "GET":
            logger.info("WebSocket upgrade on %s refused", truncate(request.path))
            self._ws.send_response(http.bad_request())
            return
        response = self._ws.accept(request)
        self._ws.send_response(response)
        if response.status_code != 101:
            return
        self._flush()
        if host.cluster is not None:
            # Cluster mode: the claim goes to Redis; read nothing until it is settled.
            assert self._transport is not None
            self._transport.pause_reading()
        self.register(query)

    def _reply(self, response: Response) -> None:
        """Send the answer to a plain HTTP request (now, or once the cluster listed ids)."""
        self._ws.send_response(response)
        self._flush()
