"""The embeddable broker: listening socket, timers and graceful shutdown.

>>> async def main() -> None:                                  # doctest: +SKIP
...     config = BrokerConfig(host="127.0.0.1", port=0, path="/myapp")
...     async with Broker(config) as broker:     # returns once listening
...         print(broker.url)                    # http://127.0.0.1:PORT/myapp/
...         ...                                  # leaving the block shuts it down

:class:`Broker` is asyncio-only (it is built on :class:`asyncio.BufferedProtocol`;
uvloop works and is used by the CLI when installed).  It owns one background
task, the timer loop, started in :meth:`Broker.start` and awaited in
:meth:`Broker.aclose`.  Each tick (:data:`~peerpy_server.core.host.TICK`)
sweeps the realm (queue expiry, alive timeout) in slices of
:data:`SWEEP_SLICE` entries, yielding to the event loop between slices so that
a mass expiry never stalls relaying; drops connections that did not finish
their request within ``handshake_timeout`` and, every ``ping_interval``, pings
every WebSocket and closes those that sent nothing since the previous ping
(both :mod:`peerpy_server.core.admission`, which also applies the per-address
limits in :meth:`Broker.admit`).

The broker wires the parts together and is, for each of them, the
:class:`~peerpy_server.core.host.Host` (what sessions, transports and the
cluster may use of it) and the :class:`~peerpy_server.core.host.HttpView` (what
the HTTP API shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .config import BrokerConfig
from .core.admission import Admission
from .core.host import TICK, HttpView
from .core.ice_access import UNREACHABLE, IceAccess, IceRequest, Registered, Verdict
from .core.realm import Client, Realm
from .core.rooms import LocalDirectory, Rooms
from .core.session import Session
from .core.stats import Stats
from .ice import ice_servers, warn_if_turn_is_open
from .logs import WarningLimiter
from .metrics import BrokerCollector, render
from .transports.stun import serve_stun
from .transports.websocket import Gathering, TcpSession

if TYPE_CHECKING:
    from .auth import JwtAuthorizer
    from .cluster import Cluster
    from .sfu import Sfu

__all__ = ["TICK", "Broker", "serve"]

logger: Final = logging.getLogger("peerpy_server.broker")

#: How long a closing WebSocket may take to answer our close frame.
CLOSE_TIMEOUT: Final = 5.0
#: How long :meth:`Broker.aclose` waits for clients to close before cutting them.
SHUTDOWN_GRACE: Final = 2.0
_BACKLOG: Final = 1024
#: Most queues and clients one slice of a sweep handles before yielding to the
#: event loop (about 2-5 ms of work on a 2-core VM).
SWEEP_SLICE: Final = 1000


class Broker:
    """A running PeerJS-compatible broker (see the module docstring).

    ``async with Broker(config) as broker`` starts it and returns once it is
    listening; :attr:`port` and :attr:`url` then tell where.  Leaving the
    block (or :meth:`aclose`) shuts it down gracefully.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        #: Repeated warnings of the broker, its connections and its realm go through this.
        self.warnings = WarningLimiter(config.warning_interval)
        #: Counters behind ``GET <path>metrics``.
        self.stats = Stats()
        #: Cluster mode's link to Redis (``config.redis_url``), else ``None``.
        self.cluster: Cluster | None = None
        remote = released = None
        if config.redis_url is not None:
            from .cluster import Cluster

            self.cluster = cluster = Cluster(self, config.redis_url, tick=TICK)
            remote = cluster.route

            def released(client: Client) -> None:
                cluster.release(client.id, client.token)

        authorizer = _authorizer(config)
        self.realm = Realm(
            config,
            self.warnings,
            stats=self.stats,
            authorize=None if authorizer is None else authorizer.authorize,
            remote=remote,
            released=released,
        )
        #: Room membership (docs/rooms.md): in memory, or in Redis in cluster mode.
        self.rooms = self.realm.rooms = Rooms(
            config,
            LocalDirectory(config.room_max_members, config.max_rooms)
            if self.cluster is None
            else self.cluster.rooms,
            self.realm.deliver_local if self.cluster is None else self.cluster.deliver,
            stats=self.stats,
            warnings=self.warnings,
            allowed=None if authorizer is None else authorizer.may_join,
        )
        if self.cluster is not None:
            self.cluster.rooms.front = self.rooms
        #: Room media through Janus (``--janus``), or ``None``.
        self.sfu = _sfu(config, self._send_now, self.rooms.local_members)
        self.rooms.sfu = self.sfu
        self._collector = BrokerCollector(
            self.stats, self.realm, lambda: len(self.realm), rooms=self.rooms
        )
        # Every transport's connections (the built-in server's and the ASGI app's).
        self._admission: Admission[Session] = Admission(config, self.stats, self.warnings)
        # Who gets /ice (key, id and token; refusals bounded per address).
        self._ice_access = IceAccess(config.key, self.stats, self.warnings, self.now)
        #: The built-in server's shared read buffer and gathered frames.
        self.gathering = Gathering(config.max_write_buffer)
        self._server: asyncio.Server | None = None
        self._running = False
        self._timer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port = 0
        self._stun: asyncio.DatagramTransport | None = None  # --stun's socket

    # -- lifecycle -------------------------------------------------------

    async def start(self, *, listen: bool = True) -> None:
        """Bind and start listening; return once connections are accepted.

        Raise :class:`OSError` if the address cannot be bound.  Cancelling it
        leaves nothing running.  ``listen=False`` starts everything but the
        listening socket (timers, ``--stun``, cluster mode): the ASGI
        application (:mod:`peerpy_server.asgi`) feeds it connections instead.
        """
        if self._running:
            raise RuntimeError("the broker is already started")
        self._running = True
        try:
            await self._start(listen)
        except BaseException:
            self._running = False
            raise

    async def _start(self, listen: bool) -> None:
        self._loop = loop = asyncio.get_running_loop()
        config = self.config
        if not listen:
            await self._start_services()
            logger.info("Broker started (no listening socket)")
            return
        ssl_context = config.make_ssl_context()
        self._server = await loop.create_server(
            lambda: TcpSession(self, self.gathering),
            host=list(config.host) if isinstance(config.host, tuple) else config.host,
            port=config.port,
            ssl=ssl_context,
            # The TLS handshake happens before TcpSession sees the socket.
            ssl_handshake_timeout=config.handshake_timeout if ssl_context else None,
            backlog=_BACKLOG,
            reuse_address=True,
        )
        sockets = self._server.sockets
        self._port = sockets[0].getsockname()[1] if sockets else config.port
        try:
            await self._start_services()
        except BaseException:
            self._server.close()
            self._server = None
            raise
        logger.info("Broker listening on %s", self.url)

    async def _start_services(self) -> None:
        """Start ``--stun``, the timers and cluster mode."""
        warn_if_turn_is_open(self.config)
        if self.config.stun_port is not None:
            self._stun = await serve_stun(
                self._first_host(), self.config.stun_port, stats=self.stats, warnings=self.warnings
            )
        assert self._loop is not None
        self._timer = self._loop.create_task(self._run_timers(), name="peerpy_server timers")
        if self.cluster is not None:
            await self.cluster.start()
        if self.sfu is not None:
            await self.sfu.start()

    async def aclose(self) -> None:
        """Stop listening, close every WebSocket with 1001 and wait (briefly) until they are gone.

        Clients get :data:`SHUTDOWN_GRACE` seconds to finish the closing
        handshake; the rest are cut.  Idempotent.  Cancelling it cuts every
        remaining connection at once.
        """
        if not self._running:
            return
        self._running = False
        server, self._server = self._server, None
        if self._stun is not None:
            self._stun.close()
            self._stun = None
        if server is not None:
            server.close()
        try:
            for connection in self._admission.connections():
                if connection.is_websocket:
                    connection.close(1001, "server shutting down")
                else:
                    connection.abort()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._drained(), SHUTDOWN_GRACE)
        finally:
            for connection in self._admission.connections():
                connection.abort()
            if self._timer is not None:
                self._timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._timer
            if server is not None:
                await server.wait_closed()
            if self.cluster is not None:
                await self.cluster.aclose()
            if self.sfu is not None:
                await self.sfu.aclose()
            logger.info("Broker stopped")

    async def _drained(self) -> None:
        while self._admission:  # noqa: ASYNC110 - polled only during shutdown
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- where -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the broker is started and not yet closing."""
        return self._running

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, ending in ``/``: ``http://127.0.0.1:PORT/myapp/``."""
        host = self._first_host()
        if host in (None, "", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.config.tls else "http"
        path = self.config.path.rstrip("/") + "/"
        return f"{scheme}://{host}:{self._port}{path}"

    def _first_host(self) -> str | None:
        host = self.config.host
        return host[0] if isinstance(host, tuple) else host

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        return self._port

    @property
    def addresses(self) -> list[str]:
        """Every ``host:port`` a listening socket is bound to (``[::]:9000``: every interface)."""
        found = []
        for sock in self._server.sockets if self._server is not None else ():
            host, port = sock.getsockname()[:2]
            found.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return found

    @property
    def stun_port(self) -> int | None:
        """The UDP port the STUN responder is bound to (``None``: no ``--stun``)."""
        return None if self._stun is None else int(self._stun.get_extra_info("sockname")[1])

    @property
    def connections(self) -> int:
        """How many connections are open (TCP connections, and the ASGI app's WebSockets)."""
        return len(self._admission)

    def connections_from(self, ip: str) -> tuple[int, int]:
        """How many connections ``ip`` has open, and how many of them are in their handshake."""
        return self._admission.connections_from(ip)

    # -- the HTTP API's view (HttpView) ------------------------------------------

    @property
    def view(self) -> HttpView:
        """What the HTTP API shows: the broker itself."""
        return self

    def is_taken(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is registered on this instance."""
        return peer_id in self.realm

    def peers(self, answer: Callable[[list[str]], None]) -> None:
        """Call ``answer(ids)``: this instance's ids now, in cluster mode the cluster's later."""
        if self.cluster is None:
            answer(self.realm.ids())
        else:
            self.cluster.respond_later(answer)

    def ice_servers(
        self, request: IceRequest, answer: Callable[[int, list[dict[str, Any]] | None], None]
    ) -> None:
        """``GET <path><key>/ice``: ``answer(status, servers)`` (see :mod:`.core.ice_access`).

        The id and token are checked on this instance, or in cluster mode in
        Redis (any instance's peers); ``request.host`` names our STUN server.
        """

        def decided(verdict: Verdict) -> None:
            if verdict is not Verdict.GRANTED:
                answer(verdict.value, None)
                return
            config = self.config
            servers = ice_servers(
                peer_id=request.peer_id,
                now=time.time(),
                host_header=request.host,
                stun_port=self.stun_port,
                turn_urls=config.turn_urls,
                turn_secret=config.turn_secret,
                turn_ttl=config.turn_ttl,
            )
            answer(200, servers)

        self._ice_access.check(request, self._registered, decided)

    def _registered(self, peer_id: str, answer: Callable[[Registered], None]) -> None:
        """The token ``peer_id`` is registered with: here, or in cluster mode in Redis.

        Redis unreachable: this instance's own client still gets an answer.
        """
        client = self.realm.client(peer_id)
        local = None if client is None else client.token
        if self.cluster is None:
            answer(local)
            return

        def found(registered: Registered) -> None:
            answer(local if registered is UNREACHABLE and local is not None else registered)

        self.cluster.registration(peer_id, found)

    def health(self) -> tuple[int, dict[str, Any]]:
        """``GET <path>health``: 200 and a JSON report, or 503 when the broker cannot serve.

        It cannot serve while shutting down, when ``concurrent_limit`` ids
        are registered and, in cluster mode, while Redis is unreachable or stalled (a
        load balancer should then send clients elsewhere).
        """
        realm = self.realm
        redis = "off" if self.cluster is None else self.cluster.state
        if not self._running:
            status = "stopping"
        elif len(realm) >= self.config.concurrent_limit:
            status = "full"
        elif redis == "down":
            status = "redis-down"
        elif redis == "stalled":  # Redis frozen or too slow: the cluster's outbox fills
            status = "degraded"
        else:
            status = "ok"
        report: dict[str, Any] = {
            "status": status,
            "clients": len(realm),
            "connections": len(self._admission),
            "queued_messages": realm.queued_messages,
            "queued_bytes": realm.queued_size,
            "redis": redis,
        }
        if self.cluster is not None:
            report["redis_backlog_bytes"] = self.cluster.backlog
        return (200 if status == "ok" else 503), report

    def metrics(self) -> bytes:
        """``GET <path>metrics``: the Prometheus text exposition."""
        return render(self._collector)

    def room_members(self, room: str, answer: Callable[[list[str]], None]) -> None:
        """Call ``answer(ids)`` with the members of ``room``: now, or in cluster mode from Redis."""
        self.rooms.members(room, answer)

    # -- used by the sessions, the transports and the cluster (Host) -------------

    def now(self) -> float:
        """The monotonic clock the realm runs on."""
        assert self._loop is not None
        return self._loop.time()

    def admit(self, session: Session) -> bool:
        """Track a new connection from ``session.ip``; ``False`` if a limit refuses it.

        Refused while the broker is not running; else see
        :meth:`Admission.admit <peerpy_server.core.admission.Admission.admit>`
        (per address, in total, evicting the oldest handshake when full).
        """
        return self._running and self._admission.admit(session, self.now())

    def settled(self, session: Session) -> None:
        """The connection's request arrived: the handshake timeout no longer applies."""
        self._admission.settled(session)

    def forget(self, session: Session) -> None:
        """The connection is gone (idempotent)."""
        self._admission.forget(session)

    def _send_now(self, peer_id: str, frame: str) -> bool:
        """Send a room frame outside any frame handling (the SFU's answers) and write it."""
        sent = self.rooms.send(peer_id, frame)
        self.write_gathered()
        return sent

    def write_gathered(self) -> None:
        """Write the frames gathered for each connection (see :meth:`TcpSession.send`)."""
        self.gathering.write()

    def close_later(self, session: Session) -> None:
        """Cut ``session`` if its closing handshake is not done within :data:`CLOSE_TIMEOUT`."""
        assert self._loop is not None
        self._loop.call_later(CLOSE_TIMEOUT, session.abort)

    # -- timers ------------------------------------------------------------

    async def _run_timers(self) -> None:
        """Run the sweeps forever; cancelling stops them."""
        ping_interval = self.config.ping_interval
        next_ping = self.now() + ping_interval if ping_interval is not None else None
        while True:
            await asyncio.sleep(TICK)
            now = self.now()
            try:
                # A mass expiry is handled in slices, other clients served in between.
                while self.realm.sweep(now, SWEEP_SLICE):
                    self.write_gathered()
                    await asyncio.sleep(0)
                self._admission.sweep(now)
                if next_ping is not None and ping_interval is not None and now >= next_ping:
                    next_ping = now + ping_interval
                    self._admission.ping(now)
                self.write_gathered()  # the sweep's EXPIREs
                self.warnings.flush(now)
            except Exception:  # a bug must not stop the timers
                logger.exception("Timer sweep failed")


def _sfu(
    config: BrokerConfig,
    send: Callable[[str, str], bool],
    local_members: Callable[[str], list[str]],
) -> Sfu | None:
    """The Janus instances of ``janus_urls``, if any (see :mod:`peerpy_server.sfu`)."""
    if not config.janus_urls:
        return None
    from .sfu import Sfu, parse_instance

    key = config.janus_key.encode() if config.janus_key else secrets.token_bytes(32)
    return Sfu(
        [parse_instance(url) for url in config.janus_urls],
        key=key,
        admin_key=config.janus_admin_key,
        publishers=config.room_max_members or 100,
        send=send,
        local_members=local_members,
    )


def _authorizer(config: BrokerConfig) -> JwtAuthorizer | None:
    """The token checks for ``jwt_secret``/``jwt_public_key``, if either is set."""
    if config.jwt_secret is None and config.jwt_public_key is None:
        return None
    from .auth import JwtAuthorizer

    return JwtAuthorizer.from_config(config)


async def serve(config: BrokerConfig) -> None:
    """Run a broker until cancelled (what the CLI does).

    Cancelling it shuts the broker down gracefully, then re-raises
    :class:`asyncio.CancelledError`.
    """
    async with Broker(config):
        await asyncio.get_running_loop().create_future()
