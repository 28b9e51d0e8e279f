"""Shared fixtures.

aiortc is asyncio-only, so every async test runs on asyncio.  Every test runs
with no ICE servers and ICE restricted to 127.0.0.1, whatever the environment
says, so no test can reach past loopback through a default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from anyio.from_thread import start_blocking_portal
from peerpy_protocol.ids import random_token

from peerpy.backends import wrtc_installed

from .helpers.brokers import peerjs_server, peerpy_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERPY_ICE_SERVERS", "")
    monkeypatch.setenv("PEERPY_ICE_ADDRESSES", "127.0.0.1")
    monkeypatch.delenv("PEERPY_SERVER", raising=False)
    # The suite runs on aiortc unless a test asks for a backend (see `backends`).
    monkeypatch.setenv("PEERPY_BACKEND", "aiortc")


#: Backend pairs (caller, callee): each alone and mixed in both offer directions.
BACKEND_PAIRS = [
    ("aiortc", "aiortc"),
    ("wrtc", "wrtc"),
    ("aiortc", "wrtc"),
    ("wrtc", "aiortc"),
]


@pytest.fixture(params=BACKEND_PAIRS, ids=["-".join(p) for p in BACKEND_PAIRS])
def backends(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The backends of the two peers of a test (the first one offers)."""
    pair: tuple[str, str] = request.param
    if "wrtc" in pair and not wrtc_installed():
        pytest.skip("wrtc is not installed (pip install 'peerpy-sdk[wrtc]')")
    return pair


@pytest.fixture(params=["aiortc", "wrtc"])
def peer_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """One backend for every peer of a test, child processes included (PEERPY_BACKEND)."""
    name: str = request.param
    if name == "wrtc" and not wrtc_installed():
        pytest.skip("wrtc is not installed (pip install 'peerpy-sdk[wrtc]')")
    monkeypatch.setenv("PEERPY_BACKEND", name)
    return name


@pytest.fixture
def peer_id() -> str:
    """A fresh peer id per use."""
    return "p" + random_token()


@pytest.fixture(scope="session")
def node_broker_url() -> Iterator[str]:
    """The real peer 1.0.2 server, shared by the session (expire_timeout 1 s)."""
    with peerjs_server(expire_timeout_ms=1000, extra=("--allow_discovery",)) as url:
        yield url


@pytest.fixture(params=["peerpy", "peer-1.0.2"])
async def broker_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A broker URL: our broker and the real peer 1.0.2, each in turn."""
    if request.param == "peer-1.0.2":
        yield request.getfixturevalue("node_broker_url")
        return
    async with peerpy_server(expire_timeout=1.0, allow_discovery=True) as url:
        yield url


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """Our broker in-process on 127.0.0.1 (messages to an absent peer expire after 1 s)."""
    async with peerpy_server(expire_timeout=1.0) as broker_url:
        yield broker_url


@pytest.fixture
def sync_url() -> Iterator[str]:
    """Our broker as ``url``, on an event loop thread of its own (for blocking tests)."""
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(peerpy_server(expire_timeout=1.0)) as broker_url,
    ):
        yield broker_url
