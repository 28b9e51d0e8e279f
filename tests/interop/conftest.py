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

import pytest
from peerpy_protocol.ids import random_token
from playwright.async_api import BrowserContext, ConsoleMessage

from ..helpers.brokers import PEERJS_SERVER, peerpy_server
from .browser import CHROMIUM, PEERJS_DIST, StaticServer, launch, open_page
from .pairs import Pair, python_peer


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


@pytest.fixture(scope="module")
def python_backend() -> str:
    """The Python peer's backend (test_data.py overrides it to run on both)."""
    return "aiortc"


@pytest.fixture(scope="module")
async def pair(
    chromium: BrowserContext, static_server: StaticServer, broker: str, python_backend: str
) -> AsyncIterator[Pair]:
    """A loaded harness page with Peer ``main`` and a Python Peer, on ``broker``."""
    async with open_page(chromium, static_server.origin) as page:
        page.page.on("console", _print_console)
        token = random_token()
        browser_id = await page.start("main", f"browser-{token}", broker)
        async with python_peer(f"python-{token}", broker, python_backend) as peer:
            assert peer.backend == python_backend
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
