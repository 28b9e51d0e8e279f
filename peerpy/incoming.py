"""Incoming connections: from an OFFER to the application.

:class:`Incoming` takes each OFFER the broker relays to a
:class:`~peerpy.peer.Peer` and, in this order, so that an OFFER refused at any
step costs no peer connection and a bad one closes nothing:

1. checks it (a data OFFER must name a serialization we have);
2. asks the :class:`~peerpy.admission.Admission` table for room, closing the
   half-open connections it evicts;
3. builds the connection on a new peer connection, registers it and admits
   it to the table;
4. hands it over once it is ready: a data connection once open (to the
   ``connection`` handlers, else to :meth:`Incoming.accept`), a call once it
   rings (to the ``call`` handlers, else to :meth:`Incoming.accept_call`).

Connections that belong to a room (see :mod:`peerpy.rooms.mesh`) never reach
the application this way: the :class:`Claims` (the peer's rooms) refuse an
OFFER for a room we are not in at step 1 and take the others at step 4.

A data connection not open by its deadline (``Timeouts.half_open``) is closed;
one that finds ``Limits.pending_connections`` waiting for ``accept()`` is
closed too, and an unanswered call expires after ``Timeouts.negotiation``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

import anyio
from peerpy_protocol.messages import Relay, RelayType
from peerpy_protocol.payloads import (
    AnswerPayload,
    ConnectionType,
    OfferPayload,
    Resume,
    SessionDescription,
)

from .admission import Admission
from .connection import Connection, ConnectionArgs
from .dataconnection import DataConnection
from .diagnosis import failure_message
from .events import EventEmitter
from .exceptions import DisconnectedError, NegotiationFailedError, PeerError
from .mailbox import Mailbox, MailboxClosed, MailboxFull
from .mediaconnection import MediaConnection
from .owner import Host
from .registry import Registry
from .rooms.mesh import resumable
from .serialization import SerializerFactory, serializer_for_wire_name

__all__ = ["Claims", "Incoming", "until_destroyed"]

T = TypeVar("T")


async def until_destroyed(accept: Callable[[], Awaitable[T]]) -> AsyncIterator[T]:
    """Yield what ``accept()`` returns until it raises DisconnectedError (``async for``)."""
    while True:
        try:
            yield await accept()
        except DisconnectedError:
            return


class Claims(Protocol):
    """Who may take incoming connections before the application (the peer's rooms)."""

    def wants(self, src: str, offer: OfferPayload) -> bool | None:
        """``True``/``False``: build the connection or refuse the OFFER; ``None``: not mine."""
        ...

    def take(self, conn: Connection) -> bool:
        """Take ``conn`` (open data, or a ringing call) if it is mine."""
        ...


class Incoming:
    """The incoming side of one peer (see the module docstring)."""

    def __init__(
        self,
        host: Host,
        registry: Registry,
        events: EventEmitter,
        serializers: Mapping[str, SerializerFactory],
        logger: logging.Logger,
    ) -> None:
        self._host = host
        #: Who takes incoming connections first (the peer's rooms), if anyone.
        self.claims: Claims | None = None
        self._registry = registry
        self._events = events
        self._serializers = serializers
        self._log = logger
        limits = host.limits
        #: The half-open incoming connections (see :mod:`peerpy.admission`).
        self.admission: Admission[Connection] = Admission(
            limits, half_open=host.timeouts.half_open, clock=anyio.current_time, logger=logger
        )
        self._connections: Mailbox[DataConnection] = Mailbox(limits.pending_connections)
        self._calls: Mailbox[MediaConnection] = Mailbox(limits.pending_connections)

    def close(self) -> None:
        """Wake every accept() and accept_call() with DisconnectedError."""
        self._connections.close()
        self._calls.close()

    async def accept(self) -> DataConnection:
        """The next open incoming data connection.  Cancelling loses nothing."""
        try:
            return await self._connections.get()
        except MailboxClosed:
            raise DisconnectedError("The peer is destroyed.") from None

    async def accept_call(self) -> MediaConnection:
        """The next incoming call still ringing.  Cancelling loses nothing."""
        while True:
            try:
                call = await self._calls.get()
            except MailboxClosed:
                raise DisconnectedError("The peer is destroyed.") from None
            if not call.closed:  # unanswered calls expire after Timeouts.negotiation
                return call

    def on_offer(self, src: str, offer: OfferPayload) -> None:
        """Check, make room for, build and admit the connection ``offer`` asks for.

        An OFFER to resume a connection (a new generation, see
        :mod:`peerpy.generation`) goes to that connection, never to
        ``accept()``; if there is no such connection it is refused.
        """
        host = self._host
        if offer.resume is not None and offer.resume.generation > 0:
            self._on_resume_offer(src, offer)
            return
        serializer = None
        if offer.type is ConnectionType.DATA:
            try:
                serializer = serializer_for_wire_name(
                    offer.serialization or "binary",
                    limits=host.limits.decoding,
                    custom=self._serializers,
                )
            except PeerError as exc:
                self._log.warning("refusing %s from %s: %s", offer.connection_id, src, exc)
                return
        if self.claims is not None and self.claims.wants(src, offer) is False:
            return
        room = self.admission.make_room(src, offer.connection_id, len(self._registry))
        for evicted, why in room.evicted:
            self._registry.forget(evicted)  # its task finishes the teardown
            evicted._fail(NegotiationFailedError(f"closed before it opened to make room: {why}"))
        if not room.fits:
            return
        args = ConnectionArgs(
            owner=host,
            pc=host._new_pc(),
            peer=src,
            connection_id=offer.connection_id,
            metadata=offer.metadata,
            originator=False,
            logger=self._log,
        )
        if serializer is None:
            call = MediaConnection(args, offer=offer, resumable=resumable(offer.metadata))
            host._register(call)
            self.admission.admit(call)
            host._spawn(lambda: call._ring(self._deliver_call, host.timeouts.negotiation))
            return
        conn = DataConnection(
            args,
            label=offer.label or offer.connection_id,
            serializer=serializer,
            reliable=bool(offer.reliable),
            resumable=resumable(offer.metadata),
        )
        host._register(conn)
        self.admission.admit(conn)
        conn.deliver(offer)
        host._spawn(lambda: self._welcome(conn))

    def _on_resume_offer(self, src: str, offer: OfferPayload) -> None:
        conn = self._registry.get(src, offer.connection_id)
        if conn is not None and conn.resumable and not conn.closed:
            conn.deliver(offer)
            return
        self._log.info(
            "refusing to resume %s from %s: no such connection", offer.connection_id, src
        )
        assert offer.resume is not None
        refusal = AnswerPayload(
            SessionDescription("answer", ""),
            offer.type,
            offer.connection_id,
            Resume(offer.resume.generation, 0, refused=True),
        )
        relay = Relay(RelayType.ANSWER, dst=src, payload=refusal.to_json())
        self._host._spawn(lambda: self._host._send_relay(relay))

    def _deliver_call(self, call: MediaConnection) -> bool:
        """Give an incoming call to the ``call`` handlers, else to accept_call()."""
        if call.closed:  # closed to make room for newer OFFERs before it rang
            return False
        if self.claims is not None and self.claims.take(call):
            return True
        if self._events.has("call"):
            self._events.emit("call", call)
            return True
        try:
            self._calls.put_nowait(call)
        except (MailboxFull, MailboxClosed):
            self._log.warning("refusing call %s from %s: too many unanswered", call, call.peer)
            return False
        return True

    async def _welcome(self, conn: DataConnection) -> None:
        """Hand an incoming data connection to the application once it is open.

        A connection still not open by its deadline (``Timeouts.half_open``
        after its OFFER) is closed.  Cancelled only with the peer, which closes
        every connection.
        """
        limit = self._host.timeouts.half_open
        deadline = self.admission.deadline(conn)
        try:
            with anyio.fail_after(limit if deadline is None else deadline - anyio.current_time()):
                await conn.wait_open()
        except (PeerError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):  # _fail logs it, with what ICE gathered
                text = f"incoming connection not open in {limit:g} s"
                conn._fail(NegotiationFailedError(failure_message(text, conn.peer_connection)))
            else:
                self._log.debug("incoming %s from %s: %s", conn.connection_id, conn.peer, exc)
            await conn._close()
            return
        finally:
            self.admission.discard(conn)
        if self.claims is not None and self.claims.take(conn):
            return
        if self._events.has("connection"):
            self._events.emit("connection", conn)
            return
        try:
            self._connections.put_nowait(conn)
        except (MailboxFull, MailboxClosed):
            self._log.warning(
                "refusing %s from %s: %d connections wait for accept()",
                conn.connection_id,
                conn.peer,
                self._host.limits.pending_connections,
            )
            await conn._close()
