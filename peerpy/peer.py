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
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Literal, overload

import anyio
import anyio.abc
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection
from peerpy_protocol.ids import random_token, validate_id
from peerpy_protocol.messages import Relay

from . import backends as _backend
from .config import Limits, ServerAddress, Timeouts, resolve_ice, resolve_network, resolve_servers
from .connection import Connection, SdpTransform
from .dataconnection import DataConnection
from .events import PEER_EVENTS, EventEmitter, PeerEvent
from .exceptions import PeerError, UsageError
from .ice import BrokerIce
from .incoming import Incoming, until_destroyed
from .logs import set_debug
from .mediaconnection import MediaConnection
from .network import NetworkPolicy
from .outgoing import Outgoing
from .registry import Registry
from .room import Room
from .rooms.hub import Rooms
from .routing import Router
from .serialization import SerializerFactory, check_factories
from .session import BrokerSession, TokenProvider

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

__all__ = ["Peer", "PeerEvent"]


class Peer:
    """A peer registered with a PeerJS broker.

    ``id`` is the id to register; ``None`` asks the broker for one.  The broker
    is ``server`` (a URL, or a list of a cluster's brokers: ``auto_reconnect``
    moves to the next one) or ``host``/``port``/``path``/``secure`` as in PeerJS,
    else ``PEERPY_SERVER``, else ``http://127.0.0.1:9000/``.  ICE servers come
    from ``ice_servers`` (or a full aiortc ``configuration``), else
    ``PEERPY_ICE_SERVERS``, else the broker's ``GET {path}{key}/ice`` once
    registered, refreshed before its TURN credentials expire (:mod:`peerpy.ice`).
    ICE gathers on ``network`` or ``ice_addresses``, else ``PEERPY_ICE_ADDRESSES``.
    Data connections and calls run on ``backend`` (``"auto"``, ``"aiortc"`` or
    ``"wrtc"``), else ``PEERPY_BACKEND``, else auto (see :mod:`peerpy.backends`).
    With ``auto_reconnect=True`` a lost broker session is registered again
    (same id and token, backing off from ``Timeouts.reconnect_initial`` to
    ``Timeouts.reconnect_max``, with jitter) once the broker is back; PeerJS
    leaves that to the application.  Losing the broker never ends the peer or
    its open connections (see :mod:`peerpy.session`).  ``token`` is the secret
    that owns the id (random by default), or a callable returning one (a
    ``str`` or an awaitable of it), asked before registering and again
    whenever the broker refuses the token (an expired JWT).  ``debug`` (0-3) is
    PeerJS's: the level of the ``peerpy`` logger (see :mod:`peerpy.logs`).

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
        token: str | TokenProvider | None = None,
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
        debug: int | None = None,
    ) -> None:
        if id is not None:
            validate_id(id)
        set_debug(debug)
        self._id = id
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._destroyed = False
        self._log = logger or logging.getLogger("peerpy.peer")
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        #: Every broker of the cluster (``server=[...]``); ``server`` is the one in use.
        self.servers = resolve_servers(
            server, host=host, port=port, path=path, secure=secure, key=key
        )
        ice = resolve_ice(ice_servers, configuration, servers=self.servers)
        self.configuration, self._ice_from_broker = ice
        self.network = network or resolve_network(ice_addresses)
        #: The backend of data connections and calls: ``"aiortc"`` or ``"wrtc"``, from
        #: ``backend``, else PEERPY_BACKEND, else auto (see :mod:`peerpy.backends`).
        self.backend = _backend.choose_backend(
            _backend.resolve_backend(backend), self.configuration, self.network
        )
        self._registry = Registry()
        self._events = EventEmitter(PEER_EVENTS, self._spawn, self._log)
        self._serializers = check_factories(serializers)
        self._incoming = Incoming(self, self._registry, self._events, self._serializers, self._log)
        self._incoming.claims = self._rooms = Rooms(self, self._log)  # room connections
        self._outgoing = Outgoing(self, self._serializers, self._log)
        self._router = Router(
            self._registry, self._incoming.on_offer, self._log, anyio.current_time
        )
        self._session = BrokerSession(
            self,
            self.servers,
            self._router.route,
            token=token or random_token(),
            timeouts=self.timeouts,
            ssl_context=ssl_context,
            events=self._events,
            registry=self._registry,
            auto_reconnect=auto_reconnect,
            logger=self._log,
        )
        self._signaling = self._session.signaling
        self._ice = BrokerIce(self, self._session.ice_servers, self._log)

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed else "open" if self.open else "disconnected"
        return f"<Peer {self._id!r} {state} on {self.server.base_url}>"

    # -- properties ---------------------------------------------------------

    @property
    def id(self) -> str | None:
        """This peer's id (``None`` until the broker gave one)."""
        return self._id

    @property
    def server(self) -> ServerAddress:
        """The broker in use (one of :attr:`servers`)."""
        return self._signaling.address

    @server.setter
    def server(self, address: ServerAddress) -> None:
        self._signaling.address = address

    @property
    def token(self) -> str | None:
        """The secret that owns our id on the broker; reused by :meth:`reconnect`.

        ``None`` only before a token provider was first asked.  Setting it
        changes the token of the next registration; after ``auto_reconnect``
        stopped on a refused token, setting it resumes the attempts.
        """
        return self._session.token

    @token.setter
    def token(self, value: str) -> None:
        self._session.token = value

    @property
    def open(self) -> bool:
        """Whether the broker session is open (we can connect and be reached)."""
        return self._session.open

    @property
    def disconnected(self) -> bool:
        """Whether the broker session is closed (connections may live on)."""
        return not self.open

    @property
    def destroyed(self) -> bool:
        """Whether the peer is destroyed: nothing works any more."""
        return self._destroyed

    @property
    def connections(self) -> list[Connection]:
        """The live connections, data and media."""
        return list(self._registry)

    def get_connection(self, peer: str, connection_id: str) -> Connection | None:
        """The connection with ``peer`` whose id is ``connection_id``, if any."""
        return self._registry.get(peer, connection_id)

    def half_open_connections(self) -> list[Connection]:
        """Incoming connections whose OFFER arrived but which are not open yet, oldest first."""
        return self._incoming.admission.half_open()

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
            await self._session.register(self._tg)
            if self._ice_from_broker:
                await self._ice.start()
                self._spawn(self._ice.keep_fresh)
            self._events.emit("open", self._id)  # as PeerJS, on the first registration too
        except BaseException:  # leave the group cleanly, raise the error unwrapped
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._stack is not None
        # Exit the group as on a normal exit: the caller's exception is not wrapped.
        await self._stack.__aexit__(None, None, None)

    async def disconnect(self) -> None:
        """Close the broker session (:meth:`reconnect` claims the id again); connections stay.

        Not cancellable.
        """
        await self._session.disconnect()

    async def reconnect(self) -> None:
        """Open a new broker session with the same id and token; cancelling abandons it.

        Raise :class:`DisconnectedError` if the peer is destroyed, :class:`UsageError` if open.
        """
        await self._session.reconnect()

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
            self._rooms.close()
            async with anyio.create_task_group() as tg:
                for conn in self._registry:
                    tg.start_soon(conn._close)
            await self._session.leave()
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
        are typed: a type checker flags ``peer.on("conection", ...)``.  An
        ``open`` handler registered on an open peer runs at once, as PeerJS code expects.
        """
        replay = (self._id,) if event == "open" and self._stack is not None and self.open else None
        return self._events.on(event, handler, replay=replay)

    def off(self, event: PeerEvent, handler: Callable[..., Any]) -> None:
        """Remove an event handler."""
        self._events.off(event, handler)

    # -- outgoing -----------------------------------------------------------

    def _new_pc(self) -> RTCPeerConnection:
        return _backend.create_peer_connection(
            self.backend,
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
        return await self._outgoing.connect(
            peer,
            label=label,
            metadata=metadata,
            serialization=serialization,
            reliable=reliable,
            timeout=timeout,
            sdp_transform=sdp_transform,
        )

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
        return await self._outgoing.call(
            peer,
            tracks,
            metadata=metadata,
            receive=receive,
            timeout=timeout,
            sdp_transform=sdp_transform,
        )

    def join(self, room: str, *, metadata: Any = None) -> Room:
        """``async with peer.join(room, metadata=...) as room:`` (see :class:`peerpy.room.Room`)."""
        return self._rooms.join(room, metadata)

    # -- incoming -----------------------------------------------------------

    async def accept(self) -> DataConnection:
        """Wait for the next incoming data connection, returned open.

        Raise :class:`DisconnectedError` once the peer is destroyed.  Cancelling
        loses nothing.
        """
        return await self._incoming.accept()

    def __aiter__(self) -> AsyncIterator[DataConnection]:
        return until_destroyed(self.accept)

    async def accept_call(self) -> MediaConnection:
        """The next incoming call, not yet answered: call its ``answer()``.

        Raises and cancels as :meth:`accept` does.
        """
        return await self._incoming.accept_call()

    def calls(self) -> AsyncIterator[MediaConnection]:
        """Incoming calls, as ``async for call in peer.calls()``, until the peer is destroyed."""
        return until_destroyed(self.accept_call)

    async def list_peers(self) -> list[str]:
        """Ids registered on the broker (--allow_discovery).  Cancelling abandons the request."""
        return await self._signaling.list_peers()

    # -- plumbing used by connections ----------------------------------------

    async def _send_relay(self, message: Relay) -> None:
        await self._signaling.send(message)

    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._tg is None:
            raise UsageError("the Peer is not started: use `async with Peer(...)`")
        self._tg.start_soon(func)

    def _register(self, conn: Connection) -> None:
        self._registry.add(conn)
        self._spawn(conn.run)

    def _forget(self, conn: Connection) -> None:
        self._registry.forget(conn)
