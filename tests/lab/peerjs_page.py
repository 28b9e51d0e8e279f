"""A lab host running the real PeerJS 1.5.5 client in headless Chromium.

``peerjs_page.py ID TARGET --server URL``: serve the interop harness page
(tests/interop/page) on this namespace's 127.0.0.1, start Chromium with the
interop flags (:func:`tests.interop.browser.launch`, the broker's host
reachable), register PeerJS Peer ID on the broker, ``connect()`` to TARGET
(JSON serialization, reliable) and send ``--count`` messages ``{"seq": n}``.
Then wait up to ``--wait`` seconds for its RTCPeerConnection to be ``failed``
or PeerJS to close it, whichever comes first (PeerJS 1.5.5 closes only when
``iceConnectionState`` is ``failed`` or ``closed``, or the data channel closes).

Prints ``{"event": ...}`` lines: ``open`` (the connection is open, the
messages sent), then ``settled`` (with the monotonic time of the lab, shared
by its namespaces) or ``timeout``; both carry the page's states then (``ice``,
``connection``, ``channel``, ``open``, ``closed``: PeerJS emitted ``close``),
the connection's errors, how many incoming connections the page's Peer got,
and the OFFER/ANSWER messages the page received from the broker (its
WebSocket frames) with every ``peerpyResume`` value in them: a PeerJS page
must never be offered resumption.  The page's console goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from playwright.async_api import ConsoleMessage, WebSocket

from tests.interop.browser import StaticServer, launch, open_page, split_broker_url


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


class Signalling:
    """The OFFER and ANSWER messages the page received from the broker."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def watch(self, socket: WebSocket) -> None:
        socket.on("framereceived", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") in ("OFFER", "ANSWER"):
            self.messages.append(message)

    def summary(self) -> dict[str, Any]:
        """Each message's type and the payload keys; every ``peerpyResume`` value found."""
        payloads = [m.get("payload") or {} for m in self.messages]
        return {
            "signals": [
                [m["type"], sorted(p)] for m, p in zip(self.messages, payloads, strict=True)
            ],
            "resume_fields": [p["peerpyResume"] for p in payloads if "peerpyResume" in p],
        }


#: Follow the page's connection: log its ICE, connection and channel states to the
#: console; resolve ``window.labSettled`` once the peer connection is ``failed`` or
#: PeerJS closed the connection, whichever comes first.
WATCH = """([target, id]) => {
  const conn = window.harness.peers.main.peer.getConnection(target, id);
  const pc = conn.peerConnection;
  const state = () => ({
    ice: pc.iceConnectionState, connection: pc.connectionState,
    channel: conn.dataChannel.readyState, open: conn.open,
  });
  const log = (what) => console.log(`${what}: ${JSON.stringify(state())}`);
  window.labSettled = new Promise((resolve) => {
    conn.on("close", () => { log("PeerJS close"); resolve(); });
    pc.addEventListener("iceconnectionstatechange", () => log("iceconnectionstatechange"));
    pc.addEventListener("connectionstatechange", () => {
      log("connectionstatechange");
      if (pc.connectionState === "failed") resolve();
    });
    conn.dataChannel.addEventListener("close", () => log("channel close"));
  });
  window.labState = state;
  log("open");
}"""

#: Wait for ``window.labSettled`` (true) or the timeout in ms (false).
SETTLED = """(ms) => Promise.race([
  window.labSettled.then(() => true),
  new Promise((resolve) => setTimeout(() => resolve(false), ms)),
])"""


def _console(message: ConsoleMessage) -> None:
    print(f"[{time.monotonic():.3f} browser {message.type}] {message.text}", file=sys.stderr,
          flush=True)  # fmt: skip


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("id")
    parser.add_argument("target")
    parser.add_argument("--server", required=True)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--wait", type=float, default=40.0)
    args = parser.parse_args(argv)
    broker_host = split_broker_url(args.server)[0]
    signalling = Signalling()
    with StaticServer() as static, tempfile.TemporaryDirectory() as profile:
        async with (
            launch(Path(profile), static.origin, resolvable=(broker_host,)) as context,
            open_page(context, static.origin) as page,
        ):
            page.page.on("console", _console)
            page.page.on("websocket", signalling.watch)
            await page.start("main", args.id, args.server)
            info = await page.connect("main", args.target, serialization="json", reliable=True)
            await page.page.evaluate(WATCH, [args.target, info.connection_id])
            await page.send(info.connection_id, *({"seq": n} for n in range(args.count)))
            emit(event="open", t=time.monotonic(), connection_id=info.connection_id,
                 serialization=info.serialization)  # fmt: skip
            settled = await page.page.evaluate(SETTLED, int(args.wait * 1000))
            t = time.monotonic()
            state = await page.page.evaluate("window.labState()")
            incoming = await page.page.evaluate("window.harness.peers.main.incoming.items.length")
            emit(event="settled" if settled else "timeout", t=t, **state,
                 closed=await page.is_closed(info.connection_id),
                 errors=await page.conn_errors(info.connection_id),
                 incoming=incoming,
                 **signalling.summary())  # fmt: skip


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
