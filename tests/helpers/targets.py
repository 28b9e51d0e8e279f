"""Brokers for the broker tests: ours (built-in, clustered, in ASGI) or ``peer`` 1.0.2.

Each ``run_*`` is an async context manager yielding a :class:`Target` (which
implementation, its port(s), our :class:`~peerpy_server.Broker` objects); the
conformance suite runs one scenario on each (the ``start_broker`` fixture in
tests/integration/server/conftest.py).  Everything listens on 127.0.0.1 and
stops by itself (processes by PID).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import attrs
from peerpy_server import Broker, BrokerConfig
from peerpy_server.asgi import BrokerApp

from .brokers import PEERJS_SERVER, free_port
from .shared import PerOptions


@attrs.frozen
class Target:
    """A running broker: which implementation, where, and (ours only) the object."""

    name: str
    port: int
    path: str
    broker: Broker | None = None
    #: Cluster: every broker's port; WebSocket URLs go to each in turn.
    ports: tuple[int, ...] = ()
    brokers: tuple[Broker, ...] = ()
    #: The ports of brokers mounted in an ASGI app (``run_asgi``, ``run_asgi_cluster``).
    asgi_ports: tuple[int, ...] = ()
    _turn: list[int] = attrs.field(factory=lambda: [0])

    @property
    def is_peer(self) -> bool:
        return self.name == "peer"

    @property
    def is_asgi(self) -> bool:
        """Our broker mounted in a Starlette app under uvicorn (``run_asgi``)."""
        return self.name.startswith("asgi")

    def by_asgi(self, url: str) -> bool:
        """Whether WebSocket ``url`` reaches a broker mounted in an ASGI app."""
        return urlsplit(url).port in self.asgi_ports

    def no_status(self, url: str) -> int:
        """The close code a client of ``url`` sees when the broker closes with no status.

        ASGI cannot send a close frame without a status: the ASGI app sends 1000.
        """
        return 1000 if self.by_asgi(url) else 1005

    def ws_url(
        self,
        *,
        key: str | None = "peerjs",
        id: str | None = None,
        token: str | None = None,
        path: str | None = None,
    ) -> str:
        base = (self.path.rstrip("/") + "/peerjs") if path is None else path
        query = "&".join(
            f"{name}={quote(value)}"
            for name, value in (("key", key), ("id", id), ("token", token))
            if value is not None
        )
        port = self.port
        if self.ports:  # spread peers over the cluster's instances
            port = self.ports[self._turn[0] % len(self.ports)]
            self._turn[0] += 1
        return f"ws://127.0.0.1:{port}{base}?{query}&version=1.5.5"


_PEER_FLAGS = {
    "key": "--key",
    "expire_timeout": "--expire_timeout",
    "alive_timeout": "--alive_timeout",
    "concurrent_limit": "--concurrent_limit",
}


@contextlib.contextmanager
def peer_process(path: str = "/myapp", **options: Any) -> Iterator[Target]:
    """Run the real ``peer`` 1.0.2 CLI on a free loopback port; stop it by PID."""
    port = free_port()
    argv = ["node", str(PEERJS_SERVER), "--host", "127.0.0.1", "--port", str(port), "--path", path]
    for name, value in options.items():
        if name == "allow_discovery":
            if value:
                argv.append("--allow_discovery")
        elif name in ("expire_timeout", "alive_timeout"):
            argv += [_PEER_FLAGS[name], str(int(value * 1000))]
        else:
            argv += [_PEER_FLAGS[name], str(value)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("peer 1.0.2 did not start")
            time.sleep(0.05)
        yield Target("peer", port, path)
    finally:
        if proc.poll() is None:
            proc.terminate()  # by PID: this process only
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def use_shared_peer(
    servers: PerOptions[Target], path: str = "/myapp", **options: Any
) -> contextlib.AbstractAsyncContextManager[Target]:
    """``start_broker`` for ``peer`` 1.0.2: the module's running one for these options."""

    @contextlib.asynccontextmanager
    async def shared() -> AsyncIterator[Target]:
        yield servers.get(path=path, **options)

    return shared()


@contextlib.asynccontextmanager
async def run_ours(path: str = "/myapp", **options: Any) -> AsyncIterator[Target]:
    """Run our broker in-process on a free loopback port."""
    config = BrokerConfig(host="127.0.0.1", port=0, path=path, **options)
    async with Broker(config) as broker:
        yield Target("peerpy", broker.port, path, broker)


_clusters = [0]


@contextlib.asynccontextmanager
async def run_cluster(
    redis_url: str, path: str = "/myapp", size: int = 3, **options: Any
) -> AsyncIterator[Target]:
    """Run ``size`` brokers in-process sharing one realm on Redis (a fresh key prefix)."""
    _clusters[0] += 1
    prefix = f"test{_clusters[0]}-{time.monotonic_ns()}:"
    async with contextlib.AsyncExitStack() as stack:
        brokers = []
        for _ in range(size):
            config = BrokerConfig(
                host="127.0.0.1", port=0, path=path, redis_url=redis_url, redis_prefix=prefix,
                **options,
            )  # fmt: skip
            brokers.append(await stack.enter_async_context(Broker(config)))
        ports = tuple(broker.port for broker in brokers)
        yield Target("cluster", ports[0], path, brokers[0], ports, tuple(brokers))


@contextlib.asynccontextmanager
async def run_uvicorn(app: Any) -> AsyncIterator[int]:
    """Serve the ASGI ``app`` with uvicorn in-process on a free loopback port; yield the port.

    uvicorn's WebSocket is websockets' sans-I/O one; its signal handlers stay
    pytest's (the socket is bound here, the server stopped by ``should_exit``).
    """
    import uvicorn

    class Server(uvicorn.Server):
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, ws="websockets-sansio", lifespan="on", log_level="warning", timeout_graceful_shutdown=5
    )
    server = Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 10 s")
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        finally:
            sock.close()


def mounted_app(broker_app: BrokerApp, path: str) -> Any:
    """A Starlette host app: ``broker_app`` mounted at ``path``, a host route ``/hello`` beside."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello from the host app")

    routes = [Route("/hello", hello), Mount(path, app=broker_app)]
    return Starlette(routes=routes, lifespan=broker_app.lifespan)


@contextlib.asynccontextmanager
async def run_asgi(path: str = "/myapp", **options: Any) -> AsyncIterator[Target]:
    """Our broker as an ASGI app mounted at ``path`` in Starlette, served by uvicorn."""
    broker_app = BrokerApp(BrokerConfig(**options))
    async with run_uvicorn(mounted_app(broker_app, path)) as port:
        yield Target("asgi", port, path, broker_app.broker, asgi_ports=(port,))


@contextlib.asynccontextmanager
async def run_asgi_cluster(
    redis_url: str, path: str = "/myapp", **options: Any
) -> AsyncIterator[Target]:
    """One realm on Redis over both transports: two mounted ASGI brokers and a built-in one.

    HTTP requests go to the first ASGI broker; WebSockets to each broker in turn.
    """
    _clusters[0] += 1
    prefix = f"test{_clusters[0]}-{time.monotonic_ns()}:"
    cluster = {"redis_url": redis_url, "redis_prefix": prefix}
    async with contextlib.AsyncExitStack() as stack:
        first, second = (
            BrokerApp(BrokerConfig(**cluster, **options)),
            BrokerApp(BrokerConfig(**cluster, **options)),
        )
        port1 = await stack.enter_async_context(run_uvicorn(mounted_app(first, path)))
        config = BrokerConfig(host="127.0.0.1", port=0, path=path, **cluster, **options)
        builtin = await stack.enter_async_context(Broker(config))
        port2 = await stack.enter_async_context(run_uvicorn(mounted_app(second, path)))
        brokers = (first.broker, builtin, second.broker)
        ports = (port1, builtin.port, port2)
        yield Target("asgi-cluster", port1, path, first.broker, ports, brokers, (port1, port2))


StartBroker = Callable[..., contextlib.AbstractAsyncContextManager[Target]]
