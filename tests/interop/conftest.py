"""Fixtures of the interop suite: one Chromium per module, one page and peers per broker.

Every test here talks to the real PeerJS 1.5.5 client in headless Chromium
(``/usr/bin/chromium`` driven by Playwright), through both brokers: ours and
the real ``peer`` 1.0.2.  Costly things are shared:

* ``static_server`` (session): the harness page and PeerJS files on 127.0.0.1;
* ``chromium`` (module): one browser per test module; a module sets
  ``CHROMIUM_MEDIA = True`` to get the fake camera and microphone;
* ``broker`` (module, parametrized): pytest orders a module's tests by broker,
  so each broker starts once per module;
* ``pair`` (module): a loaded page whose PeerJS Peer is registered, and a
  Python :class:`~peerpy.Peer`, both on ``broker``.  Tests open their own
  connections between the two and close them.

Module-scoped async fixtures need ``anyio_backend`` at module scope too.
The browser's console (PeerJS warnings, harness log) is printed, so pytest
shows it with a failing test's captured output.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from playwright.async_api import BrowserContext, ConsoleMessage

from peerpy import DataConnection, Peer
from peerpy.ids import random_token

from ..brokers import PEERJS_SERVER, peerpy_server
from .browser import CHROMIUM, PEERJS_DIST, BrowserPage, ConnInfo, StaticServer, launch, open_page

#: Whole-test bound for opening one connection, both sides.
OPEN_TIMEOUT = 20.0


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} (apt-get install chromium)"
    if not (PEERJS_DIST / "peerjs.min.js").exists() or not PEERJS_SERVER.exists():
        return "tests/support/node_modules (cd tests/support && npm ci)"
    if shutil.which("node") is None:
        return "node"
    return None


@pytest.fixture(scope="session", autouse=True)
def _interop_requirements() -> None:
    """Fail loudly (not skip) when the interop tools are not installed."""
    missing = _missing()
    if missing is not None:
        pytest.fail(f"interop tests need {missing}", pytrace=False)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def static_server() -> Iterator[StaticServer]:
    """The harness page, peerjs.min.js and the MsgPack serializer on 127.0.0.1."""
    with StaticServer() as server:
        yield server


@pytest.fixture(scope="module")
async def chromium(
    request: pytest.FixtureRequest,
    static_server: StaticServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[BrowserContext]:
    """One headless Chromium for the module (fake media if the module asks)."""
    media = bool(getattr(request.module, "CHROMIUM_MEDIA", False))
    profile = tmp_path_factory.mktemp("chromium-profile")
    async with launch(profile, static_server.origin, media=media) as context:
        yield context


@pytest.fixture(scope="module", params=["peerpy", "peer-1.0.2"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A broker URL: ours in-process, then the real peer 1.0.2 (expire_timeout 1 s)."""
    if request.param == "peer-1.0.2":
        yield request.getfixturevalue("node_broker_url")
        return
    async with peerpy_server(expire_timeout=1.0) as url:
        yield url


def python_peer(peer_id: str | None, broker_url: str) -> Peer:
    """A Python peer on ``broker_url`` that uses no ICE server and only 127.0.0.1.

    Explicit because module-scoped fixtures start before the autouse fixture
    that sets PEERPY_ICE_* for each test.
    """
    return Peer(peer_id, server=broker_url, ice_servers=[], ice_addresses=["127.0.0.1"])


@dataclass
class Pair:
    """A browser peer and a Python peer registered on the same broker."""

    page: BrowserPage
    browser_id: str
    python: Peer
    broker_url: str

    @property
    def python_id(self) -> str:
        assert self.python.id is not None
        return self.python.id

    async def open(
        self,
        direction: str,
        *,
        label: str,
        serialization: str = "binary",
        reliable: bool = False,
        metadata: Any = None,
    ) -> tuple[DataConnection, ConnInfo]:
        """Open a data connection; ``direction`` says who calls connect().

        Returns the Python side and the page's view of its side, both open.
        """
        options: dict[str, Any] = {"label": label, "serialization": serialization}
        options["reliable"] = reliable
        if metadata is not None:
            options["metadata"] = metadata
        with anyio.fail_after(OPEN_TIMEOUT):
            if direction == "python-connects":
                conn = await self.python.connect(self.browser_id, **options)
                info = await self.page.accept("main", conn.connection_id)
                return conn, info
            assert direction == "browser-connects", direction
            result: list[ConnInfo] = []

            async def browser_side() -> None:
                result.append(await self.page.connect("main", self.python_id, **options))

            async with anyio.create_task_group() as tg:
                tg.start_soon(browser_side)
                conn = await self._accept(label)
            return conn, result[0]

    async def _accept(self, label: str) -> DataConnection:
        """The incoming connection labelled ``label``; strays are closed."""
        while True:
            conn = await self.python.accept()
            if conn.label == label:
                return conn
            await conn.close()


@pytest.fixture(scope="module")
async def pair(chromium: BrowserContext, static_server: StaticServer, broker: str) -> AsyncIterator[Pair]:
    """A loaded harness page with Peer ``main`` and a Python Peer, on ``broker``."""
    async with open_page(chromium, static_server.origin) as page:
        page.page.on("console", _print_console)
        token = random_token()
        browser_id = await page.start("main", f"browser-{token}", broker)
        async with python_peer(f"python-{token}", broker) as peer:
            yield Pair(page=page, browser_id=browser_id, python=peer, broker_url=broker)
        await page.destroy("main")


def _print_console(message: ConsoleMessage) -> None:
    print(f"[browser {message.type}] {message.text}")


@pytest.fixture(params=["browser-connects", "python-connects"])
def direction(request: pytest.FixtureRequest) -> str:
    """Who calls connect(): the page's PeerJS or the Python peer."""
    return str(request.param)


@pytest.fixture
def label() -> str:
    """A fresh connection label, which also tells a test's connection apart."""
    return "interop-" + random_token()
