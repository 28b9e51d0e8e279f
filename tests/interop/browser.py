"""Run the real PeerJS 1.5.5 client in Debian's headless Chromium, driven by Playwright.

Three pieces, each usable on its own:

* :class:`StaticServer` serves the harness page (``page/``) and the pinned
  PeerJS bundle and MsgPack serializer from ``tests/support/node_modules`` on
  127.0.0.1.
* :func:`launch` starts ``/usr/bin/chromium`` through Playwright's async API
  with the flags of ``browser-interop.md``: loopback ICE allowed, no mDNS host
  hiding, every host name but 127.0.0.1 unresolvable, one merged
  ``--disable-features`` switch, and (for media tests) the fake camera and
  microphone.  It never downloads a browser.
* :class:`BrowserPage` wraps one loaded harness page with typed async methods
  (start a Peer, connect, accept, send, recv, close) that exchange value
  descriptions with ``page/harness.js`` (see :mod:`tests.interop.values`),
  and media calls with the fake camera and microphone (call, answer, check
  that the remote media decodes, hang up).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import playwright
from playwright.async_api import BrowserContext, Page, async_playwright

HERE = Path(__file__).parent
PAGE_DIR = HERE / "page"
PEERJS_DIST = HERE.parent / "support" / "node_modules" / "peerjs" / "dist"
CHROMIUM = Path("/usr/bin/chromium")

#: Features disabled on top of Playwright's own list.  Chromium honours only
#: the last ``--disable-features`` switch, so both lists go into one switch.
EXTRA_DISABLED_FEATURES = ("WebRtcHideLocalIpsWithMdns",)

#: Used only if Playwright's list cannot be read from its driver: the entries
#: that keep a fresh headless profile quiet on the network.
FALLBACK_PLAYWRIGHT_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "MediaRouter",
    "PaintHolding",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "PreconnectToSearch",
)

#: Flags for media tests: a fake camera and microphone, no permission prompt.
FAKE_MEDIA_FLAGS = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")


# ---------------------------------------------------------------- static files


class StaticServer:
    """Serve the harness page and the PeerJS files on 127.0.0.1, in a thread."""

    ROUTES: ClassVar[dict[str, tuple[Path, str]]] = {
        "/": (PAGE_DIR / "index.html", "text/html; charset=utf-8"),
        "/index.html": (PAGE_DIR / "index.html", "text/html; charset=utf-8"),
        "/harness.js": (PAGE_DIR / "harness.js", "text/javascript; charset=utf-8"),
        "/peerjs.min.js": (PEERJS_DIST / "peerjs.min.js", "text/javascript; charset=utf-8"),
        "/serializer.msgpack.mjs": (
            PEERJS_DIST / "serializer.msgpack.mjs",
            "text/javascript; charset=utf-8",
        ),
    }

    def __init__(self, routes: dict[str, tuple[Path, str]] | None = None) -> None:
        table = dict(self.ROUTES if routes is None else routes)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = table.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_error(404)
                    return
                body = route[0].read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", route[1])
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` (a secure context for Chromium)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------- chromium


def playwright_disabled_features() -> tuple[str, ...] | None:
    """Playwright's own ``--disable-features`` list, read from its driver; None if not found."""
    package = Path(playwright.__file__).parent / "driver" / "package" / "lib"
    for bundle in sorted(package.glob("**/*.js")):
        try:
            text = bundle.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        match = re.search(r"disabledFeatures = \[(.*?)\]\.filter\(Boolean\)", text, re.DOTALL)
        if match is None:
            continue
        body = re.sub(r"//[^\n]*", "", match.group(1))
        return tuple(re.findall(r'"([A-Za-z0-9_]+)"', body))
    return None


def chromium_args(
    *, media: bool = False, loopback: bool = True, resolvable: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Return (args, ignore_default_args) for launching Chromium as the recipe says.

    ``loopback=False`` leaves out ``--allow-loopback-in-peer-connection``: a
    stock Chromium, which offers no ICE candidate on a loopback-only host.
    ``resolvable``: hosts Chromium may reach besides 127.0.0.1 (the NAT lab's broker).
    """
    own = playwright_disabled_features()
    features = list(
        dict.fromkeys([*(own or FALLBACK_PLAYWRIGHT_FEATURES), *EXTRA_DISABLED_FEATURES])
    )
    ignore = [f"--disable-features={','.join(own)}"] if own else []
    args = [
        "--no-sandbox",  # the suite runs as root in CI
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        *(["--allow-loopback-in-peer-connection"] if loopback else []),
        "--host-resolver-rules=MAP * ~NOTFOUND, "
        + ", ".join(f"EXCLUDE {host}" for host in ("127.0.0.1", *resolvable)),
        f"--disable-features={','.join(features)}",
    ]
    if media:
        args.extend(FAKE_MEDIA_FLAGS)
    return args, ignore


async def command_line(context: BrowserContext) -> str:
    """The browser's command line as ``chrome://version`` shows it."""
    page = await context.new_page()
    try:
        await page.goto("chrome://version")
        return await page.inner_text("#command_line")
    finally:
        await page.close()


@contextlib.asynccontextmanager
async def launch(
    user_data_dir: Path,
    origin: str,
    *,
    media: bool = False,
    loopback: bool = True,
    resolvable: Sequence[str] = (),
) -> AsyncIterator[BrowserContext]:
    """Start headless Chromium (a persistent context) with media allowed on ``origin``.

    Checks at launch that exactly one ``--disable-features`` switch reached
    Chromium and that it hides no local IP behind mDNS.
    """
    args, ignore = chromium_args(media=media, loopback=loopback, resolvable=resolvable)
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=args,
            ignore_default_args=ignore,
        )
        try:
            await context.grant_permissions(["microphone", "camera"], origin=origin)
            switches = re.findall(r"--disable-features=(\S*)", await command_line(context))
            if len(switches) != 1 or "WebRtcHideLocalIpsWithMdns" not in switches[0].split(","):
                raise RuntimeError(f"Chromium got --disable-features {switches!r}")
            yield context
        finally:
            await context.close()


# ------------------------------------------------------------------------- page


@dataclass(frozen=True)
class ConnInfo:
    """What the page's PeerJS says about one of its DataConnections."""

    connection_id: str
    peer: str
    label: str
    metadata: Any
    serialization: str
    reliable: bool
    ordered: bool | None
    open: bool

    @classmethod
    def from_js(cls, raw: dict[str, Any]) -> ConnInfo:
        return cls(
            connection_id=raw["connectionId"],
            peer=raw["peer"],
            label=raw["label"],
            metadata=raw["metadata"],
            serialization=raw["serialization"],
            reliable=raw["reliable"],
            ordered=raw["ordered"],
            open=raw["open"],
        )


@dataclass(frozen=True)
class CallInfo:
    """What the page's PeerJS says about one of its MediaConnections."""

    connection_id: str
    peer: str
    metadata: Any
    open: bool
    type: str
    #: One ``{"id", "audio", "video"}`` per ``stream`` event (track counts).
    streams: list[dict[str, Any]]
    errors: list[dict[str, str]]
    closed: bool

    @classmethod
    def from_js(cls, raw: dict[str, Any]) -> CallInfo:
        return cls(
            connection_id=raw["connectionId"],
            peer=raw["peer"],
            metadata=raw["metadata"],
            open=raw["open"],
            type=raw["type"],
            streams=list(raw["streams"]),
            errors=list(raw["errors"]),
            closed=raw["closed"],
        )


class BrowserPage:
    """One loaded harness page; each method calls ``window.harness`` in it."""

    def __init__(self, page: Page) -> None:
        self.page = page

    async def _call(self, method: str, *args: Any) -> Any:
        return await self.page.evaluate(
            "([method, args]) => window.harness[method](...args)", [method, list(args)]
        )

    async def start(self, name: str, peer_id: str, broker_url: str) -> str:
        """Start a PeerJS Peer ``name`` with ``peer_id`` on the broker; return its id."""
        host, port, path = split_broker_url(broker_url)
        options = {"id": peer_id, "host": host, "port": port, "path": path}
        return str(await self._call("start", name, options))

    async def peer_errors(self, name: str) -> list[dict[str, str]]:
        return list(await self._call("peerErrors", name))

    async def wait_peer_error(self, name: str, error_type: str) -> dict[str, str]:
        return dict(await self._call("waitPeerError", name, error_type))

    async def destroy(self, name: str) -> None:
        await self._call("destroy", name)

    async def connect(self, name: str, remote: str, **options: Any) -> ConnInfo:
        """``peer.connect(remote, options)``; return once the connection is open."""
        return ConnInfo.from_js(await self._call("connect", name, remote, options))

    async def accept(self, name: str, connection_id: str) -> ConnInfo:
        """Peer ``name``'s incoming connection ``connection_id``, once open."""
        return ConnInfo.from_js(await self._call("accept", name, connection_id))

    async def info(self, connection_id: str) -> ConnInfo:
        return ConnInfo.from_js(await self._call("info", connection_id))

    async def conn_errors(self, connection_id: str) -> list[dict[str, str]]:
        return list(await self._call("connErrors", connection_id))

    async def send(self, connection_id: str, *descriptions: Any) -> None:
        """Build each described value in the page and ``conn.send()`` it."""
        await self._call("send", connection_id, json.dumps(list(descriptions)))

    async def recv(self, connection_id: str, count: int = 1) -> list[Any]:
        """The next ``count`` values the page received, described."""
        return list(json.loads(await self._call("recv", connection_id, count)))

    async def drain(self, connection_id: str) -> list[Any]:
        """Values received and not read yet, described."""
        return list(json.loads(await self._call("drain", connection_id)))

    async def close(self, connection_id: str, *, flush: bool = False) -> None:
        await self._call("close", connection_id, flush)

    async def is_closed(self, connection_id: str) -> bool:
        return bool(await self._call("isClosed", connection_id))

    async def wait_closed(self, connection_id: str, timeout: float = 10.0) -> bool:
        """True once the page's connection emitted ``close``; False after ``timeout``."""
        return bool(await self._call("waitClosed", connection_id, int(timeout * 1000)))

    async def log(self) -> list[str]:
        return list(await self._call("log"))

    # -- media calls (see "media calls" in page/harness.js) ------------------

    async def call(self, name: str, remote: str, **options: Any) -> str:
        """``peer.call(remote, fakeCameraAndMic, options)``; return the connectionId at once."""
        return str(await self._call("call", name, remote, options))

    async def answer_call(self, name: str, connection_id: str, *, send: bool = True) -> CallInfo:
        """Answer incoming call ``connection_id`` with the fake devices (or receive only)."""
        return CallInfo.from_js(await self._call("answerCall", name, connection_id, send))

    async def call_info(self, connection_id: str) -> CallInfo:
        return CallInfo.from_js(await self._call("callInfo", connection_id))

    async def check_media(self, connection_id: str, frames: int = 10) -> dict[str, Any]:
        """Play the call's remote stream until ``frames`` frames show; report what decoded."""
        return dict(await self._call("checkMedia", connection_id, frames))

    async def hang_up(self, connection_id: str) -> None:
        await self._call("hangUp", connection_id)

    async def wait_call_closed(self, connection_id: str, timeout: float = 10.0) -> bool:
        """True once the page's call emitted ``close``; False after ``timeout``."""
        return bool(await self._call("waitCallClosed", connection_id, int(timeout * 1000)))


def split_broker_url(url: str) -> tuple[str, int, str]:
    """``http://127.0.0.1:9000/myapp/`` -> ``("127.0.0.1", 9000, "/myapp/")``."""
    match = re.fullmatch(r"http://([^/:]+):(\d+)(/.*)?", url)
    if match is None:
        raise ValueError(f"not an http broker URL: {url!r}")
    return match.group(1), int(match.group(2)), match.group(3) or "/"


@contextlib.asynccontextmanager
async def open_page(context: BrowserContext, origin: str) -> AsyncIterator[BrowserPage]:
    """Load the harness page; close it on exit."""
    page = await context.new_page()
    try:
        await page.goto(f"{origin}/index.html")
        await page.wait_for_function("window.harness !== undefined", timeout=10_000)
        yield BrowserPage(page)
    finally:
        await page.close()
