"""Chat between a browser tab running PeerJS and Python, in two commands.

    peerpy-server --port 9000              # terminal 1: the broker
    python examples/browser/serve.py       # terminal 2: the page and the Python peer

Open the printed address, click "Connect to Python" and type on either side:
lines typed here go to every connected tab.  With ``--connect ID`` Python
dials the tab instead (open the page as ``/?id=ID``).

The page is served on 127.0.0.1 (a secure context for WebRTC) with the
PeerJS 1.5.5 bundle found in ``node_modules`` (``npm install peerjs@1.5.5``)
or given with ``--peerjs``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import sys
import threading
import urllib.parse
from pathlib import Path

import anyio

from peerpy import DataConnection, Peer, PeerUnavailableError

HERE = Path(__file__).parent
PEERJS_CANDIDATES = (
    Path.cwd() / "node_modules/peerjs/dist/peerjs.min.js",
    HERE / "node_modules/peerjs/dist/peerjs.min.js",
    HERE.parent.parent / "tests/support/node_modules/peerjs/dist/peerjs.min.js",
)


def find_peerjs(given: str | None) -> Path:
    """The PeerJS bundle to serve; exit with a hint if there is none."""
    for path in [Path(given)] if given else PEERJS_CANDIDATES:
        if path.is_file():
            return path
    sys.exit("peerjs.min.js not found: run `npm install peerjs@1.5.5` here, or pass --peerjs PATH")


def serve_page(port: int, peerjs: Path, config: dict[str, object]) -> http.server.HTTPServer:
    """Serve index.html, peerjs.min.js and config.js on 127.0.0.1 in a background thread."""
    files = {
        "/": ((HERE / "index.html").read_bytes(), "text/html; charset=utf-8"),
        "/peerjs.min.js": (peerjs.read_bytes(), "text/javascript"),
        "/config.js": (f"window.CHAT_CONFIG = {json.dumps(config)};".encode(), "text/javascript"),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = files.get(self.path.split("?", 1)[0], (b"", ""))
            if not kind:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the terminal for the chat

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


async def chat(conn: DataConnection, open_conns: set[DataConnection]) -> None:
    """Print what one tab says until it leaves."""
    open_conns.add(conn)
    print(f"* {conn.peer} connected", flush=True)
    try:
        async for message in conn:
            print(f"{conn.peer}: {message}", flush=True)
    finally:
        open_conns.discard(conn)
        print(f"* {conn.peer} left", flush=True)


async def type_lines(open_conns: set[DataConnection]) -> None:
    """Send each line typed here to every connected tab; return at end of input."""
    async for line in anyio.wrap_file(sys.stdin):
        if not open_conns:
            print("* nobody is connected yet", flush=True)
        for conn in list(open_conns):
            await conn.send(line.rstrip("\n"))


async def dial(peer: Peer, tab: str) -> DataConnection:
    """Connect to the tab ``tab``, retrying until it is open."""
    while True:
        try:
            return await peer.connect(tab, reliable=True)
        except PeerUnavailableError:
            print(f"* waiting for {tab}: open the page with ?id={tab}", flush=True)
            await anyio.sleep(2)


async def main(args: argparse.Namespace) -> None:
    url = urllib.parse.urlsplit(args.server)
    config = {
        "host": url.hostname,
        "port": url.port or (443 if url.scheme == "https" else 80),
        "path": url.path or "/",
        "pythonId": args.id,
    }
    httpd = serve_page(args.http_port, find_peerjs(args.peerjs), config)
    page = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        async with Peer(args.id, server=args.server) as peer, anyio.create_task_group() as tg:
            open_conns: set[DataConnection] = set()
            print(f"* Python is {peer.id!r} on {args.server}", flush=True)
            print(f"* open {page} in a browser; type here to chat", flush=True)

            async def typing() -> None:
                await type_lines(open_conns)
                tg.cancel_scope.cancel()  # end of input: quit

            tg.start_soon(typing)
            if args.connect:
                tg.start_soon(chat, await dial(peer, args.connect), open_conns)
            async for conn in peer:
                tg.start_soon(chat, conn, open_conns)
    finally:
        httpd.shutdown()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    server = os.environ.get("PEERPY_SERVER", "http://127.0.0.1:9000/")
    parser.add_argument("--server", default=server, help=f"broker URL (default {server})")
    parser.add_argument("--id", default="python", help="the Python peer's id (default python)")
    parser.add_argument("--http-port", type=int, default=8000, help="page port (default 8000)")
    parser.add_argument("--connect", metavar="ID", help="dial the tab registered as ID")
    parser.add_argument("--peerjs", metavar="PATH", help="peerjs.min.js to serve")
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C quits quietly
        anyio.run(main, parse_args())
