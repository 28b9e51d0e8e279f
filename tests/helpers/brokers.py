"""Start the brokers peers meet on in tests: ours (in-process) and peer 1.0.2 (node).

Both listen on 127.0.0.1 only.  Each helper is a context manager that yields
the broker's base URL and stops what it started, by PID.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
PEERJS_SERVER = SUPPORT / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 15.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


@contextlib.contextmanager
def peerjs_server(
    *, path: str = "/myapp", expire_timeout_ms: int = 5000, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """Run the real ``peer`` 1.0.2 server with node; yield its URL."""
    port = free_port()
    args = [
        "node", str(PEERJS_SERVER), "--host", "127.0.0.1", "--port", str(port),
        "--path", path, "--expire_timeout", str(expire_timeout_ms), *extra,
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port)
        yield f"http://127.0.0.1:{port}{path}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


@contextlib.asynccontextmanager
async def peerpy_server(
    *, path: str = "/myapp", expire_timeout: float = 5.0, allow_discovery: bool = False
) -> AsyncIterator[str]:
    """Run our broker in-process; yield its URL."""
    from peerpy_server import Broker, BrokerConfig

    config = BrokerConfig(
        host="127.0.0.1",
        port=0,
        path=path,
        expire_timeout=expire_timeout,
        allow_discovery=allow_discovery,
    )
    async with Broker(config) as broker:
        yield broker.url


@contextlib.contextmanager
def threaded_peerpy_server() -> Iterator[str]:
    """Our broker (path ``/``, discovery on) on an event loop thread of its own, for
    tests that drive blocking code or child processes; yield its URL."""
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:
        cm = portal.wrap_async_context_manager(peerpy_server(path="/", allow_discovery=True))
        with cm as url:
            yield url


def wait_registered(url: str, peer_id: str, timeout: float = 30) -> None:
    """Poll the broker's peer list (discovery on) until ``peer_id`` is registered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "peerjs/peers", timeout=2) as response:
            if peer_id in json.loads(response.read()):
                return
        time.sleep(0.05)
    raise TimeoutError(f"{peer_id} never registered")
