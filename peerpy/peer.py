"""Peer: an id registered with a broker, and the connections it makes and takes.

:class:`Peer` mirrors PeerJS's ``Peer`` the way aiortc mirrors the W3C API:
``connect()`` and ``call()`` return open connections or raise; incoming
connections come from ``accept()``, ``async for conn in peer`` or ``on()``
handlers.  A Peer is an async context manager owning a task group: the broker
session, one task per connection, and event handlers all run inside it, and
leaving the ``async with`` block closes everything.

aiortc runs on asyncio only, so a Peer needs anyio's asyncio backend.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import ssl
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Literal, overload

import anyio
import anyio.abc
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection
from peerpy_protocol.ids import connection_id, random_token, validate_id
from peerpy_protocol.messages import Relay, RelayType
from peerpy_protocol.payloads import AnswerPayload, CandidatePayload, ConnectionType, OfferPayload

from . import backends as _backend
from .backoff import backoff_delays
from .config import (
    Limits,
    Timeouts,
    resolve_network,
    resolve_rtc_configuration,
    resolve_servers,
)
from .connection import Connection, SdpTransform
from .dataconnection import DataConnection
from .events import EventEmitter
from .exceptions import (
    ConnectionClosedError,
    DisconnectedError,
    NegotiationFailedError,
    NetworkError,
    PeerError,
    PeerUnavailableError,
    UnavailableIdError,
    UsageError,
)
from .mailbox import Mailbox, MailboxClosed, MailboxFull
from .mediaconnection import MediaConnection, check_tracks
from .network import NetworkPolicy
from .serialization import (
    SerializerFactory,
    check_factories,
    create_serializer,
    serializer_for_wire_name,
)
from .signaling import Signaling

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

__all__ = ["Peer"]

_EVENTS = ("open", "connection", "call", "disconnected", "close", "error")
#: The events of :meth:`Peer.on` (typed, so that a misspelt name is a type error).
PeerEvent = Literal["open", "connection", "call", "disconnected", "close", "error"]


def _check_event(event: str) -> None:
    """Raise UsageError unless ``event`` is one of :data:`PeerEvent`."""
    if event not in _EVENTS:
        raise UsageError(f"unknown event {event!r}; events are: {', '.join(sorted(_EVENTS))}")


class Peer:
    """A peer registered with a PeerJS broker.

    ``id`` is the id to register; ``None`` asks the broker for one.  The broker
    is ``server`` (a URL, or a list of a cluster's brokers: ``auto_reconnect``
    moves to the next one) or ``host``/``port``/``path``/``secure`` as in PeerJS,
    else ``PEERPY_SERVER``, else ``http://127.0.0.1:9000/``.  ICE servers come
    from ``ice_servers`` (or a full aiortc ``configuration``), else
    ``PEERPY_ICE_SERVERS``, else whatever the broker offers at ``GET
    {path}{key}/ice`` once registered (none from a broker without it).  The
    local addresses ICE gathers on come from ``network`` or ``ice_addresses``,
    else ``PEERPY_ICE_ADDRESSES``.
    Data connections run on ``backend`` (``"auto"``, ``"aiortc"`` or
    ``"wrtc"``), else ``PEERPY_BACKEND``, else auto (see :mod:`peerpy.backends`).
    With ``auto_reconnect=True`` a lost broker session is registered again
    (same id and token, backing off from ``Timeouts.reconnect_initial`` to
    ``Timeouts.reconnect_max``, with jitter) once the broker is back; PeerJS
    leaves that to the application.  Losing the broker never ends the peer or
    its open connections.

    >>> async with Peer("alice") as peer:      # doctest: +SKIP
    ...     conn = await peer.connect("bob")
    ...     await conn.send("hello")
    """

    def __init__(
        self,
        id: str | None = None,
        *,
        server: str | Sequence[str] | None = None,
        host: str | None = None,
        port: int | None = None,
        path: str | None = None,
        key: str = "peerjs",
        secure: bool | None = None,
        token: str | None = None,
        ice_servers: Sequence[RTCIceServer | str] | None = None,
        configuration: RTCConfiguration | None = None,
        ice_addresses: Sequence[str] | None = None,
        network: NetworkPolicy | None = None,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        auto_reconnect: bool = False,
        logger: logging.Logger | None = None,
        backend: str | None = None,
        serializers: Mapping[str, SerializerFactory] | None = None,
    ) -> None:
        if id is not None:
            validate_id(id)
        self._id = id
        self._token = token or random_token()
        self._log = logger or logging.getLogger("peerpy.peer")
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        #: Every broker of the cluster (``server=[...]``); ``server`` is the one in use.
        self.servers = resolve_servers(
            server, host=host, port=port, path=path, secure=secure, key=key
        )
        self.server = self.servers[0]
        self.configuration = configuration or resolve_rtc_configuration(ice_servers)
        # No ICE servers configured anywhere: ask the broker once registered.
        self._ice_from_broker = (
            configuration is None and ice_servers is None and "PEERPY_ICE_SERVERS" not in os.environ
        )
        self.network = network or resolve_network(ice_addresses)
        #: The backend of data connections: ``"aiortc"`` or ``"wrtc"`` (media: aiortc).
        #: From ``backend`` (``"auto"``, ``"aiortc"``, ``"wrtc"``), else PEERPY_BACKEND,
        #: else auto: wrtc when installed and it can honour ``network`` (see peerpy.backends).
        self.backend = _backend.choose_backend(
            _backend.resolve_backend(backend), self.configuration, self.network
        )
        self._signaling = Signaling(
            self.server, timeouts=self.timeouts, ssl_context=ssl_context, logger=self._log
        )
        self._connections: dict[tuple[str, str], Connection] = {}
        # Incoming connections not open yet, oldest first (see _make_room).
        self._half_open: dict[tuple[str, str], Connection] = {}
        self._crowded = 0  # OFFERs refused and half-open connections closed for room
        self._crowded_logged = -math.inf
        self._incoming: Mailbox[Connection] = Mailbox(self.limits.pending_connections)
        self._calls: Mailbox[MediaConnection] = Mailbox(self.limits.pending_connections)
        self._events = EventEmitter(_EVENTS, self._spawn, self._log)
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._open = False
        self._destroyed = False
        self._leaving = False  # set while we close the broker session ourselves
        self._auto_reconnect = auto_reconnect
        self._serializers = check_factories(serializers)

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed else "open" if self._open else "disconnected"
        return f"<Peer {self._id!r} {state} on {self.server.base_url}>"

    # -- properties ---------------------------------------------------------

    @property
    def id(self) -> str | None:
        """This peer's id (``None`` until the broker gave one)."""
        return self._id

    @property
    def token(self) -> str:
        """The secret that owns our id on the broker; reused by :meth:`reconnect`."""
        return self._token

    @property
    def open(self) -> bool:
        """Whether the broker session is open (we can connect and be reached)."""
        return self._open

    @property
    def disconnected(self) -> bool:
        """Whether the broker session is closed (connections may live on)."""
        return not self._open

    @property
    def destroyed(self) -> bool:
        """Whether the peer is destroyed: nothing works any more."""
        return self._destroyed

    @property
    def connections(self) -> list[Connection]:
        """The live connections, data and media."""
        return list(self._connections.values())

    def get_connection(self, peer: str, connection_id: str) -> Connection | None:
        """The connection with ``peer`` whose id is ``connection_id``, if any."""
        return self._connections.get((peer, connection_id))

    # -- life cycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Register with the broker; returns once it said OPEN.

        Raise :class:`~peerpy.exceptions.UnavailableIdError`,
        :class:`~peerpy.exceptions.ServerError` or
        :class:`~peerpy.exceptions.NetworkError` if it does not.  Cancelling
        closes whatever was opened.
        """
        if self._stack is not None:
            raise UsageError("a Peer can only be started once")
        stack = self._stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(self._teardown)
            if self._id is None:
                self._id = validate_id(await self._signaling.fetch_id())
            await self._tg.start(self._session)
            if self._ice_from_broker:
                servers = await self._signaling.fetch_ice_servers(self._id, self._token)
                self.configuration = RTCConfiguration(iceServers=servers)
            self._events.emit("open", self._id)  # as PeerJS, on the first registration too
        except BaseException:
            # Leave the task group cleanly, then raise the error itself rather
            # than the group wrapping it.
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._stack is not None
        if exc is None:
            return await self._stack.__aexit__(None, None, None)
        # Leave the task group as on a normal exit (the teardown cancels it),
        # so the caller's exception propagates as itself, not wrapped in an
        # ExceptionGroup by the task group.
        await self._stack.__aexit__(None, None, None)
        return False

    async def _session(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one broker session; report its end unless we closed it ourselves."""
        assert self._id is not None
        registered = False

        def opened(value: None = None) -> None:
            nonlocal registered
            registered = self._open = True
            task_status.started()

        status = _Status(opened)
        reason: PeerError = NetworkError("Lost connection to server.")
        try:
            await self._signaling.run(self._id, self._token, self._on_relay, task_status=status)
        except PeerError as exc:
            if not registered:
                raise
            reason = exc
        except Exception as exc:
            # Signaling turns every way a socket ends into NetworkError; should
            # anything else slip through, it must still not end the peer.
            self._log.exception("the broker session failed")
            error = NetworkError(f"the broker session failed: {type(exc).__name__}: {exc}")
            if not registered:
                raise error from exc
            reason = error
        finally:
            self._open = False
        if self._leaving or self._destroyed:
            return
        self._log.warning("lost the broker session: %s", reason)
        self._fail_pending(NetworkError(f"lost the broker session: {reason}"))
        self._events.emit("error", reason)
        self._events.emit("disconnected", self._id)
        if self._auto_reconnect:
            self._spawn(self._reconnect_until_open)

    async def _reconnect_until_open(self) -> None:
        """Register again after a lost session, backing off with jitter.

        Waits :func:`~peerpy.backoff.backoff_delays` between attempts
        (``Timeouts.reconnect_initial`` doubling up to ``reconnect_max``).
        Stops when registered, when the peer is destroyed or disconnected on
        purpose, or when the id is taken by someone else meanwhile.
        """
        delays = backoff_delays(self.timeouts.reconnect_initial, self.timeouts.reconnect_max)
        while not (self._open or self._destroyed or self._leaving):
            await anyio.sleep(next(delays))
            if self._open or self._destroyed or self._leaving:
                return
            if len(self.servers) > 1:  # this broker may be gone: try the next one
                index = (self.servers.index(self.server) + 1) % len(self.servers)
                self.server = self._signaling.address = self.servers[index]
            try:
                await self.reconnect()
            except UnavailableIdError as exc:
                self._log.warning("cannot reclaim %r: %s", self._id, exc)
                self._events.emit("error", exc)
                return
            except UsageError:  # reconnected (or destroyed) by someone else meanwhile
                return
            except PeerError as exc:  # NetworkError, ServerError: the broker is not back yet
                self._log.info("could not register again (will retry): %s", exc)

    async def disconnect(self) -> None:
        """Close the broker session; open connections stay up.

        The broker forgets our id; :meth:`reconnect` claims it again.  Not
        cancellable.
        """
        if not self._open:
            return
        self._leaving = True
        try:
            await self._signaling.aclose()
        finally:
            self._leaving = False
        self._fail_pending(DisconnectedError("disconnected from the broker"))
        self._events.emit("disconnected", self._id)

    async def reconnect(self) -> None:
        """Open a new broker session with the same id and token.

        Raise :class:`DisconnectedError` if the peer is destroyed and
        :class:`UsageError` if it is connected.  Cancelling abandons the attempt.
        """
        if self._destroyed or self._tg is None:
            raise DisconnectedError(
                "This peer cannot reconnect to the server. It has already been destroyed."
            )
        if self._open:
            raise UsageError(
                f"Peer {self._id} cannot reconnect because it is not disconnected from the server!"
            )
        await self._tg.start(self._session)
        self._events.emit("open", self._id)

    async def destroy(self) -> None:
        """Close every connection and the broker session; the peer is then unusable.

        Also what leaving ``async with`` does.  Not cancellable.
        """
        if self._tg is None or self._destroyed:
            self._destroyed = True
            return
        await self._teardown()
        self._tg.cancel_scope.cancel()

    aclose = destroy

    async def _teardown(self) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        with anyio.CancelScope(shield=True):
            self._incoming.close()
            self._calls.close()
            self._leaving = True
            async with anyio.create_task_group() as tg:
                for conn in list(self._connections.values()):
                    tg.start_soon(conn._close)
            await self._signaling.aclose()
            self._events.emit("close")
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # -- events -------------------------------------------------------------

    @overload
    def on(self, event: Literal["open", "disconnected"], handler: Callable[[str], Any]) -> Any: ...
    @overload
    def on(self, event: Literal["connection"], handler: Callable[[DataConnection], Any]) -> Any: ...
    @overload
    def on(self, event: Literal["call"], handler: Callable[[MediaConnection], Any]) -> Any: ...
    @overload
    def on(self, event: Literal["close"], handler: Callable[[], Any]) -> Any: ...
    @overload
    def on(self, event: Literal["error"], handler: Callable[[PeerError], Any]) -> Any: ...
    def on(self, event: PeerEvent, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Register a PeerJS-style handler: open, connection, call, disconnected, close, error.

        ``open`` fires once registered (the first time, and after each
        :meth:`reconnect`) with our id.  With a ``connection`` handler,
        incoming connections go to it instead of :meth:`accept`.  Event names
        are typed: a type checker flags ``peer.on("conection", ...)``.
        """
        return self._events.on(event, handler)

    def off(self, event: PeerEvent, handler: Callable[..., Any]) -> None:
        """Remove an event handler."""
        self._events.off(event, handler)

    # -- outgoing -----------------------------------------------------------

    def _check_usable(self) -> None:
        if self._destroyed:
            raise DisconnectedError("The peer is destroyed.")
        if not self._open:
            raise DisconnectedError("Cannot connect to new Peer after disconnecting from server.")

    def _new_pc(self, *, media: bool = False) -> RTCPeerConnection:
        return _backend.create_peer_connection(
            "aiortc" if media else self.backend,
            self.configuration,
            self.network,
            remote_gone=self.timeouts.remote_gone,
        )

    async def connect(
        self,
        peer: str,
        *,
        label: str | None = None,
        metadata: Any = None,
        serialization: str = "binary",
        reliable: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-call deadline, as call()'s
        sdp_transform: SdpTransform | None = None,
    ) -> DataConnection:
        """Open a data connection to ``peer`` and return it once open.

        ``serialization`` is one of ``binary`` (PeerJS's default),
        ``binary-utf8``, ``json``, ``raw`` or ``MsgPack`` (which forces
        ``reliable``).  ``reliable=False`` gives PeerJS's default unordered (but
        fully reliable) channel.  A name given in ``Peer(serializers=...)``
        picks that custom serializer.  ``sdp_transform(sdp) -> sdp`` rewrites
        the SDP offer before it is sent (PeerJS's ``sdpTransform``).  Raise
        :class:`PeerUnavailableError` if the broker does not know ``peer``,
        :class:`NegotiationFailedError` if ICE fails or the connection is not
        open within ``timeout`` seconds (default ``Timeouts.negotiation``).
        Cancelling closes the half-made connection.
        """
        self._check_usable()
        validate_id(peer)
        serializer = create_serializer(
            serialization, limits=self.limits.decoding, custom=self._serializers
        )
        cid = connection_id("data")
        conn = DataConnection(
            self,
            self._new_pc(),
            peer=peer,
            connection_id=cid,
            label=cid if label is None else label,
            metadata=metadata,
            serializer=serializer,
            reliable=reliable or serializer.reliable_required,
            originator=True,
            logger=self._log,
        )
        conn.sdp_transform = sdp_transform
        await self._open_outgoing(conn, conn._start_as_caller, timeout)
        return conn

    async def call(
        self,
        peer: str,
        tracks: Iterable[MediaStreamTrack] | None = None,
        *,
        metadata: Any = None,
        receive: Sequence[str] = (),
        timeout: float | None = None,  # noqa: ASYNC109 - a per-call deadline, as asked
        sdp_transform: SdpTransform | None = None,
    ) -> MediaConnection:
        """Call ``peer`` with ``tracks`` and return the call once media flows.

        ``receive`` names kinds (``"audio"``, ``"video"``) to receive without
        sending a track of that kind.  ``sdp_transform(sdp) -> sdp`` rewrites
        the SDP offer before it is sent (PeerJS's ``sdpTransform``).  Raise
        :class:`PeerUnavailableError` if the broker does not know ``peer``,
        :class:`NegotiationFailedError` if the call is not answered and
        connected within ``timeout`` seconds (default ``Timeouts.negotiation``)
        or ICE fails.  Cancelling closes the half-made call.
        """
        self._check_usable()
        validate_id(peer)
        local = check_tracks(tracks)
        if any(kind not in ("audio", "video") for kind in receive) or isinstance(receive, str):
            raise UsageError(f"receive takes kinds 'audio'/'video', got {receive!r}")
        if not local and not receive:
            raise UsageError("a call needs tracks to send or kinds to receive")
        call = MediaConnection(
            self,
            self._new_pc(media=True),
            peer=peer,
            connection_id=connection_id("media"),
            metadata=metadata,
            originator=True,
            logger=self._log,
            tracks=local,
            receive=receive,
        )
        call.sdp_transform = sdp_transform
        self._register(call)
        await call._dial(self.timeouts.negotiation if timeout is None else timeout)
        return call

    async def _open_outgoing(
        self, conn: Connection, start: Callable[[], Awaitable[None]], within: float | None = None
    ) -> None:
        self._register(conn)
        limit = self.timeouts.negotiation if within is None else within
        await conn._open_within(
            limit, start, lambda: f"connection to {conn.peer} not open after {limit:g} s"
        )

    # -- incoming -----------------------------------------------------------

    async def accept(self) -> DataConnection:
        """Wait for the next incoming data connection, returned open.

        Raise :class:`DisconnectedError` once the peer is destroyed.  Cancelling
        loses nothing.
        """
        try:
            conn = await self._incoming.get()
        except MailboxClosed:
            raise DisconnectedError("The peer is destroyed.") from None
        assert isinstance(conn, DataConnection)
        return conn

    def __aiter__(self) -> AsyncIterator[DataConnection]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[DataConnection]:
        while True:
            try:
                yield await self.accept()
            except DisconnectedError:
                return

    async def accept_call(self) -> MediaConnection:
        """Wait for the next incoming call, not yet answered: call its ``answer()``.

        Raise :class:`DisconnectedError` once the peer is destroyed.  Cancelling
        loses nothing.
        """
        while True:
            try:
                call = await self._calls.get()
            except MailboxClosed:
                raise DisconnectedError("The peer is destroyed.") from None
            if not call.closed:  # unanswered calls expire after Timeouts.negotiation
                return call

    async def calls(self) -> AsyncIterator[MediaConnection]:
        """Incoming calls, as ``async for call in peer.calls()``, until the peer is destroyed."""
        while True:
            try:
                yield await self.accept_call()
            except DisconnectedError:
                return

    def _deliver_call(self, call: MediaConnection) -> bool:
        """Give an incoming call to the ``call`` handlers, else to accept_call()."""
        if call.closed:  # closed to make room for newer OFFERs before it rang
            return False
        if self._events.has("call"):
            self._events.emit("call", call)
            return True
        try:
            self._calls.put_nowait(call)
        except (MailboxFull, MailboxClosed):
            self._log.warning("refusing call %s from %s: too many unanswered", call, call.peer)
            return False
        return True

    async def list_peers(self) -> list[str]:
        """Ids registered on the broker (needs ``--allow_discovery`` there).

        Cancelling abandons the request.
        """
        return await self._signaling.list_peers()

    # -- plumbing used by connections ----------------------------------------

    async def _send_relay(self, message: Relay) -> None:
        await self._signaling.send(message)

    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._tg is None:
            raise UsageError("the Peer is not started: use `async with Peer(...)`")
        self._tg.start_soon(func)

    def _register(self, conn: Connection) -> None:
        old = self._connections.get((conn.peer, conn.connection_id))
        if old is not None:
            old._fail(ConnectionClosedError(f"{conn.peer} opened the same connection again"))
        self._connections[(conn.peer, conn.connection_id)] = conn
        self._spawn(conn.run)

    def _forget(self, conn: Connection) -> None:
        if self._connections.get((conn.peer, conn.connection_id)) is conn:
            del self._connections[(conn.peer, conn.connection_id)]

    def _fail_pending(self, error: PeerError, peer: str | None = None) -> None:
        """Fail outgoing connections (to ``peer``, or all) that got no answer yet."""
        for conn in list(self._connections.values()):
            if conn.originator and not conn._remote_set and peer in (None, conn.peer):
                conn._fail(error)

    async def _on_relay(self, message: Relay) -> None:
        """Route one relayed message from the broker (called in arrival order)."""
        src = message.src
        if not src:
            self._log.warning("ignoring %s without src", message.type.value)
            return
        if message.type is RelayType.LEAVE:
            for conn in list(self._connections.values()):
                if conn.peer == src:
                    conn._fail(ConnectionClosedError(f"{src} left the broker"))
            return
        if message.type is RelayType.EXPIRE:
            self._fail_pending(PeerUnavailableError(f"Could not connect to peer {src}"), src)
            return
        try:
            if message.type is RelayType.OFFER:
                self._on_offer(src, OfferPayload.from_json(message.payload))
                return
            signal: AnswerPayload | CandidatePayload
            if message.type is RelayType.ANSWER:
                signal = AnswerPayload.from_json(message.payload)
            else:
                signal = CandidatePayload.from_json(message.payload)
        except PeerError as exc:
            self._log.warning("ignoring a bad %s from %s: %s", message.type.value, src, exc)
            return
        target = self._connections.get((src, signal.connection_id))
        if target is None:
            self._log.debug(
                "no connection %s with %s for its %s", signal.connection_id, src, message.type.value
            )
            return
        target.deliver(signal)

    def _on_offer(self, src: str, offer: OfferPayload) -> None:
        # Check the OFFER, then make room, then allocate: an OFFER refused at
        # any step costs no peer connection, and a bad one closes nothing.
        serializer = None
        if offer.type is ConnectionType.DATA:
            try:
                serializer = serializer_for_wire_name(
                    offer.serialization or "binary",
                    limits=self.limits.decoding,
                    custom=self._serializers,
                )
            except PeerError as exc:
                self._log.warning("refusing %s from %s: %s", offer.connection_id, src, exc)
                return
        if not self._make_room(src, offer.connection_id):
            return
        if serializer is None:
            call = MediaConnection(
                self,
                self._new_pc(media=True),
                peer=src,
                connection_id=offer.connection_id,
                metadata=offer.metadata,
                originator=False,
                logger=self._log,
                offer=offer,
            )
            self._register_half_open(call)
            self._spawn(lambda: call._ring(self._deliver_call, self.timeouts.negotiation))
            return
        conn = DataConnection(
            self,
            self._new_pc(),
            peer=src,
            connection_id=offer.connection_id,
            label=offer.label or offer.connection_id,
            metadata=offer.metadata,
            serializer=serializer,
            reliable=bool(offer.reliable),
            originator=False,
            logger=self._log,
        )
        self._register_half_open(conn)
        conn.deliver(offer)
        self._spawn(lambda: self._welcome(conn))

    # -- half-open incoming connections ---------------------------------------
    #
    # An OFFER costs us an RTCPeerConnection, a certificate, sockets and ICE
    # and DTLS work, and anyone who knows our id can send OFFERs that never
    # complete.  Incoming connections that are not open yet ("half-open") are
    # kept in ``_half_open``, oldest first, bounded in total and per remote
    # id: a new OFFER beyond a bound closes the oldest half-open entry (of that
    # id, or of all), so the newest caller always gets a chance, and each
    # entry lives at most ``Timeouts.half_open``.  Open connections are never
    # closed to make room; when only they fill ``Limits.max_connections``, the
    # OFFER is refused.

    def half_open_connections(self) -> list[Connection]:
        """Incoming connections whose OFFER arrived but which are not open yet, oldest first."""
        self._prune_half_open()
        return list(self._half_open.values())

    def _register_half_open(self, conn: Connection) -> None:
        self._register(conn)
        key = (conn.peer, conn.connection_id)
        self._half_open.pop(key, None)  # a repeated OFFER goes last
        self._half_open[key] = conn

    def _prune_half_open(self) -> None:
        for key, conn in list(self._half_open.items()):
            if conn.open or conn.closed:
                del self._half_open[key]

    def _make_room(self, src: str, connection_id: str) -> bool:
        """Close half-open connections to make room for a new one; tell whether it fits."""
        limits = self.limits
        self._prune_half_open()
        from_src = [conn for conn in self._half_open.values() if conn.peer == src]
        self._evict_oldest(
            from_src,
            len(from_src) + 1 - limits.max_half_open_per_peer,
            f"{src} has {len(from_src)} half-open (Limits.max_half_open_per_peer)",
        )
        self._evict_oldest(
            list(self._half_open.values()),
            len(self._half_open) + 1 - limits.max_half_open,
            f"{len(self._half_open)} are half-open (Limits.max_half_open)",
        )
        self._evict_oldest(
            list(self._half_open.values()),
            len(self._connections) + 1 - limits.max_connections,
            f"{len(self._connections)} connections in all (Limits.max_connections)",
        )
        if len(self._connections) >= limits.max_connections:
            why = f"{len(self._connections)} connections are open (Limits.max_connections)"
        elif limits.max_half_open <= 0 or limits.max_half_open_per_peer <= 0:
            why = "Limits.max_half_open or max_half_open_per_peer is 0"
        else:
            return True
        self._report_crowding(f"refusing {connection_id} from {src}: {why}")
        return False

    def _evict_oldest(self, candidates: list[Connection], count: int, why: str) -> None:
        for conn in candidates[: max(count, 0)]:
            del self._half_open[(conn.peer, conn.connection_id)]
            self._forget(conn)  # gone from the table now; its task finishes the teardown
            conn._fail(NegotiationFailedError(f"closed before it opened to make room: {why}"))
            self._report_crowding(f"closing {conn.connection_id} from {conn.peer}: {why}")

    def _report_crowding(self, what: str) -> None:
        """Log a refused OFFER or a closed half-open connection: one warning per half_open s."""
        self._crowded += 1
        now = anyio.current_time()
        if now < self._crowded_logged + self.timeouts.half_open:
            self._log.debug("too many incoming connections: %s", what)
            return
        self._crowded_logged = now
        self._log.warning(
            "too many incoming connections (an OFFER flood?): %s; %d OFFERs refused or "
            "half-open connections closed so far, logged once per %g s",
            what,
            self._crowded,
            self.timeouts.half_open,
        )

    async def _welcome(self, conn: Connection) -> None:
        """Hand an incoming connection to the application once it is open.

        A connection still not open after ``Timeouts.half_open`` is closed.
        """
        limit = self.timeouts.half_open
        try:
            with anyio.fail_after(limit):
                await conn.wait_open()
        except (PeerError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):  # _fail logs it
                conn._fail(NegotiationFailedError(f"incoming connection not open in {limit:g} s"))
            else:
                self._log.debug("incoming %s from %s: %s", conn.connection_id, conn.peer, exc)
            await conn._close()
            return
        finally:
            if self._half_open.get((conn.peer, conn.connection_id)) is conn:
                del self._half_open[(conn.peer, conn.connection_id)]
        if self._events.has("connection"):
            self._events.emit("connection", conn)
            return
        try:
            self._incoming.put_nowait(conn)
        except (MailboxFull, MailboxClosed):
            self._log.warning(
                "refusing %s from %s: %d connections wait for accept()",
                conn.connection_id,
                conn.peer,
                self.limits.pending_connections,
            )
            await conn._close()


class _Status:
    """A task status that runs a callback when the task reports it started."""

    def __init__(self, callback: Callable[[None], None]) -> None:
        self._callback = callback

    def started(self, value: None = None) -> None:
        self._callback(value)
