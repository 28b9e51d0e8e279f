"""The broker as an ASGI app (peerpy_server.asgi) mounted in Starlette, served by uvicorn.

The conformance suite runs against the mounted broker too (``asgi`` and
``asgi-cluster`` targets in test_conformance.py); these tests cover what is
specific to embedding: the SDK through the mount, the host app beside it,
lifespan, limits and a client leaving mid-handshake.  Everything is real:
uvicorn on a free 127.0.0.1 port, aiortc peers, PyJWT tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from peerpy_server import BrokerConfig
from peerpy_server.asgi import BrokerApp
from websockets.exceptions import InvalidStatus

from peerpy.peer import Peer

from ...helpers.brokers import ROOT, free_port
from ...helpers.http import health_says, http_request
from ...helpers.signaling import client, peer_client
from ...helpers.targets import mounted_app, run_asgi, run_uvicorn
from ...helpers.waiting import eventually
from .test_websocket import assert_relay_works, deaf_client

pytestmark = pytest.mark.anyio

SECRET = "s3cret-for-tests-only-32-bytes!!"


def _samples(body: bytes) -> dict[str, float]:
    lines = body.decode().splitlines()
    return {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in lines if line and line[0] != "#")
    }


async def test_sdk_peers_open_a_dataconnection_through_the_mount() -> None:
    """Two peerpy Peers with server=http://…/signal/ register and exchange data both ways."""
    async with run_asgi("/signal") as target:
        url = f"http://127.0.0.1:{target.port}/signal/"
        async with Peer("asgi-a", server=url) as alice, Peer("asgi-b", server=url) as bob:
            conn = await alice.connect("asgi-b")
            incoming = await bob.accept()
            await conn.send({"hello": "through the mount"})
            assert await incoming.recv() == {"hello": "through the mount"}
            await incoming.send(b"\x00\xff" * 1000)
            assert await conn.recv() == b"\x00\xff" * 1000
            assert target.broker is not None
            assert sorted(target.broker.realm.ids()) == ["asgi-a", "asgi-b"]


async def test_health_metrics_and_a_host_route_beside_the_mount() -> None:
    """health and metrics answer under the mount; the host app's own route still works."""
    async with run_asgi("/signal", expire_timeout=30) as target:
        status, headers, body = await http_request(target.port, "GET", "/signal/health")
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body) == {
            "status": "ok", "clients": 0, "connections": 0,
            "queued_messages": 0, "queued_bytes": 0, "redis": "off",
        }  # fmt: skip
        async with peer_client(target, "alice") as alice, peer_client(target, "bob") as bob:
            await alice.send({"type": "OFFER", "dst": "bob", "payload": {"sdp": "x"}})
            assert (await bob.recv())["src"] == "alice"
            await alice.send({"type": "OFFER", "dst": "ghost", "payload": {"sdp": "x"}})
            await eventually(
                lambda: health_says(target.port, "/signal", queued_messages=1),
                within=5,
                what="the OFFER queued",
            )
            status, _, body = await http_request(target.port, "GET", "/signal/health")
            report = json.loads(body)
            assert (status, report["clients"], report["connections"]) == (200, 2, 2)
            assert report["queued_messages"] == 1
            status, headers, body = await http_request(target.port, "GET", "/signal/metrics")
            assert status == 200
            assert headers["content-type"].startswith("text/plain; version=0.0.4")
            samples = _samples(body)
            assert samples["peerpy_broker_clients"] == 2
            assert samples['peerpy_broker_relayed_messages_total{type="OFFER"}'] == 2
            assert samples["peerpy_broker_relay_latency_seconds_count"] >= 2
        status, _, body = await http_request(target.port, "GET", "/hello")
        assert (status, body) == (200, b"hello from the host app")
        # The broker's routes exist under the mount only.
        status, _, _ = await http_request(target.port, "GET", "/health")
        assert status == 404


async def test_head_options_and_unknown_routes_under_the_mount() -> None:
    """HEAD has the headers and no body, OPTIONS is a CORS preflight, the rest is 404."""
    async with run_asgi("/signal") as target:
        status, headers, body = await http_request(target.port, "HEAD", "/signal/peerjs/id")
        assert (status, body) == (200, b"")
        assert headers["content-type"] == "text/html; charset=utf-8"
        status, headers, _ = await http_request(
            target.port,
            "OPTIONS",
            "/signal/peerjs/id",
            {"Origin": "http://app.example", "Access-Control-Request-Method": "GET"},
        )
        assert status == 204
        assert headers["access-control-allow-origin"] == "http://app.example"
        status, _, body = await http_request(target.port, "GET", "/signal/nothing/here/x")
        assert (status, body) == (404, b"Cannot GET /signal/nothing/here/x")


async def test_jwt_auth_through_the_mount() -> None:
    """With jwt_secret, a token whose sub is the id registers; a wrong or expired one is refused."""
    later = int(time.time()) + 600
    good = jwt.encode({"sub": "alice", "exp": later}, SECRET, algorithm="HS256")
    async with run_asgi("/signal", jwt_secret=SECRET) as target:
        async with peer_client(target, "alice", good) as alice:
            await alice.send({"type": "OFFER", "dst": "alice", "payload": {"sdp": "x"}})
            assert (await alice.recv())["src"] == "alice"
        refused = {
            "other sub": jwt.encode({"sub": "mallory"}, SECRET, algorithm="HS256"),
            "expired": jwt.encode({"sub": "alice", "exp": 1}, SECRET, algorithm="HS256"),
            "not a jwt": "tok",
        }
        for name, token in refused.items():
            async with client(target.ws_url(id="alice", token=token)) as c:
                message = await c.recv()
                assert message["type"] == "ERROR", name
                assert message["payload"]["msg"].startswith("Invalid token"), name
                assert await c.closed() == 1000, name
        assert target.broker is not None
        assert target.broker.stats.refused["invalid-token"] == len(refused)


async def test_requests_before_the_broker_started_get_503() -> None:
    """Mounted without its lifespan, the broker answers 503 to HTTP and WebSocket, no hang."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    broker_app = BrokerApp(BrokerConfig())
    async with run_uvicorn(Starlette(routes=[Mount("/signal", app=broker_app)])) as port:
        status, _, body = await http_request(port, "GET", "/signal/peerjs/id")
        assert status == 503
        assert b"lifespan" in body
        url = f"ws://127.0.0.1:{port}/signal/peerjs?key=peerjs&id=a&token=t"
        with pytest.raises(InvalidStatus) as info:
            async with client(url):
                pass
        assert info.value.response.status_code == 503
        # Started by hand (what a lifespan does), it serves.
        async with broker_app:
            status, _, _ = await http_request(port, "GET", "/signal/peerjs/id")
            assert status == 200
            async with client(url) as c:
                assert await c.recv() == {"type": "OPEN"}
        status, _, _ = await http_request(port, "GET", "/signal/peerjs/id")
        assert status == 503


async def test_top_level_app_runs_its_own_lifespan_and_honours_root_path() -> None:
    """Served directly (no host app), the app starts on uvicorn's lifespan; root_path works."""
    import uvicorn

    broker_app = BrokerApp(BrokerConfig(allow_discovery=True))
    async with run_uvicorn(broker_app) as port:
        assert broker_app.running
        async with client(f"ws://127.0.0.1:{port}/peerjs?key=peerjs&id=top&token=t") as c:
            assert await c.recv() == {"type": "OPEN"}
            status, _, body = await http_request(port, "GET", "/peerjs/peers")
            assert (status, json.loads(body)) == (200, ["top"])
    assert not broker_app.running
    # Behind a proxy that strips /signal: uvicorn --root-path puts it back into the path.
    broker_app = BrokerApp(BrokerConfig())
    original = uvicorn.Config.__init__

    def with_root_path(self: uvicorn.Config, app: Any, **kwargs: Any) -> None:
        original(self, app, **kwargs, root_path="/signal")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uvicorn.Config, "__init__", with_root_path)
        async with run_uvicorn(broker_app) as port:
            status, _, _ = await http_request(port, "GET", "/peerjs/id")
            assert status == 200
            async with client(f"ws://127.0.0.1:{port}/peerjs?key=peerjs&id=p&token=t") as c:
                assert await c.recv() == {"type": "OPEN"}


async def test_oversized_message_closes_1009_and_others_are_served() -> None:
    """A message over max_message_size gets close 1009 (uvicorn's own limit is larger)."""
    async with (
        run_asgi("/signal", max_message_size=4096) as target,
        peer_client(target, "big") as big,
        peer_client(target, "bob") as bob,
    ):
        await big.send({"type": "OFFER", "dst": "bob", "payload": {"sdp": "x" * 5000}})
        assert await big.closed() == 1009
        await bob.send({"type": "OFFER", "dst": "bob", "payload": {"sdp": "y" * 4000}})
        assert (await bob.recv())["payload"]["sdp"] == "y" * 4000
        assert target.broker is not None
        assert target.broker.realm.ids() == ["bob"]
        assert target.broker.stats.refused["too-big"] == 1


async def test_rate_limit_closes_1008_through_the_mount() -> None:
    """A WebSocket over rate_burst messages at once is closed with 1008 and unregistered."""
    async with (
        run_asgi("/signal", rate_limit=10.0, rate_burst=20) as target,
        peer_client(target, "flood") as flood,
    ):
        for _ in range(40):  # bounded
            await flood.send({"type": "HEARTBEAT"})
        assert await flood.closed(5) == 1008
        assert target.broker is not None
        assert "flood" not in target.broker.realm.ids()


async def test_slow_reader_is_cut_off_and_sender_told() -> None:
    """A WebSocket that never reads is cut off past max_write_buffer; its sender gets LEAVE."""
    async with (
        run_asgi(max_write_buffer=64 * 1024) as target,
        peer_client(target, "fast") as fast,
        deaf_client(target, "deaf"),
    ):
        assert target.broker is not None
        payload = "y" * 1000
        for _ in range(3000):  # at most ~3 MB pushed at the deaf client
            await fast.send({"type": "CANDIDATE", "dst": "deaf", "payload": payload})
            if "deaf" not in target.broker.realm:
                break
        assert await fast.recv(10) == {"type": "LEAVE", "src": "deaf", "dst": "fast"}
        assert "deaf" not in target.broker.realm
        assert target.broker.stats.refused["slow-reader"] == 1
        await assert_relay_works(target)


async def test_client_leaving_mid_handshake_leaves_nothing_behind() -> None:
    """An upgrade request whose client vanishes is forgotten; the broker keeps serving."""
    async with run_asgi("/signal") as target:
        assert target.broker is not None
        for _ in range(5):
            _, writer = await asyncio.open_connection("127.0.0.1", target.port)
            writer.write(
                b"GET /signal/peerjs?key=peerjs&id=ghost&token=t HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            writer.transport.abort()  # gone before reading the 101
        deadline = time.monotonic() + 10
        while target.broker.connections or target.broker.realm.ids():
            assert time.monotonic() < deadline, "mid-handshake clients were not forgotten"
            await asyncio.sleep(0.05)
        async with peer_client(target, "ghost") as ghost:
            await ghost.send({"type": "OFFER", "dst": "ghost", "payload": {"sdp": "x"}})
            assert (await ghost.recv())["src"] == "ghost"


async def test_connection_limits_apply_to_mounted_websockets() -> None:
    """max_connections_per_ip counts the mount's WebSockets: one more gets 503."""
    async with run_asgi("/signal", max_connections_per_ip=2) as target:
        async with peer_client(target, "one"), peer_client(target, "two"):
            with pytest.raises(InvalidStatus) as info:
                async with client(target.ws_url(id="three", token="t")):
                    pass
            assert info.value.response.status_code == 503
        async with peer_client(target, "three"):
            pass
        assert target.broker is not None
        assert target.broker.stats.refused["per-ip"] == 1


async def test_shutdown_closes_websockets_and_stops_the_broker() -> None:
    """Stopping the host app closes the mount's WebSockets and stops the broker."""
    broker_app = BrokerApp(BrokerConfig())
    serving = run_uvicorn(mounted_app(broker_app, "/signal"))
    port = await serving.__aenter__()
    try:
        async with client(f"ws://127.0.0.1:{port}/signal/peerjs?key=peerjs&id=a&token=t") as c:
            assert await c.recv() == {"type": "OPEN"}
            assert broker_app.broker.connections == 1
            stopping = asyncio.get_running_loop().create_task(serving.__aexit__(None, None, None))
            # uvicorn closes its WebSockets (1012) before the lifespan stops the broker.
            assert await c.closed(10) in (1001, 1012)
            await asyncio.wait_for(stopping, 15)
    finally:
        if broker_app.running:  # the test failed before stopping it
            await serving.__aexit__(None, None, None)
    assert not broker_app.running
    assert broker_app.broker.connections == 0


def test_example_serves_the_broker_and_the_host_page(tmp_path: Path) -> None:
    """examples/asgi_broker.py runs: its page, its health and the PeerJS banner answer."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "server")])}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "asgi_broker.py"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    assert b"/signal" in page.read()
                break
            except OSError:
                assert process.poll() is None, "the example exited"
                assert time.monotonic() < deadline, "the example did not start within 30 s"
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/signal/health", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/signal/", timeout=5) as r:
            assert json.loads(r.read())["name"] == "PeerJS Server"
    finally:
        process.terminate()  # by PID: SIGTERM, uvicorn shuts down gracefully
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    # uvicorn re-raises SIGTERM once it has shut down gracefully.
    assert process.returncode in (0, -signal.SIGTERM), stderr.decode()
    assert b"Application shutdown complete" in stderr
