"""Benchmark: does a real caller still connect while a Peer is flooded with OFFERs?

Runs our broker and a target Peer in this process on 127.0.0.1.  Raw
WebSocket clients (``--ids`` of them) register on the broker and send
``--offers`` valid data OFFERs to the target, evenly over ``--spread``
seconds; their SDP belongs to a live aiortc connection that answers ICE checks
but never starts DTLS, so no OFFER ever completes.  Once all but the last 30
OFFERs are sent, a second Peer connects to the target and exchanges a message.

It prints the caller's time to an open connection (or its error, after
``--deadline`` seconds), how many ANSWERs the target sent, and the most
connections and half-open connections the target held at once.

    python bench/offer_flood.py                      # 300 OFFERs from 1 id
    python bench/offer_flood.py --ids 100            # ... from 100 ids
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import anyio
from peerpy_server import Broker, BrokerConfig
from websockets.asyncio.client import ClientConnection, connect

from peerpy import Peer
from peerpy.config import resolve_network, resolve_rtc_configuration
from peerpy.network import create_peer_connection


def offer(dst: str, sdp: str, connection_id: str) -> str:
    payload = {
        "sdp": {"type": "offer", "sdp": sdp},
        "type": "data",
        "connectionId": connection_id,
        "label": "x",
        "reliable": True,
        "serialization": "binary",
    }
    return json.dumps({"type": "OFFER", "dst": dst, "payload": payload})


async def run(args: argparse.Namespace) -> None:
    os.environ["PEERPY_ICE_SERVERS"] = ""
    os.environ["PEERPY_ICE_ADDRESSES"] = "127.0.0.1"
    pc = create_peer_connection(resolve_rtc_configuration(), resolve_network())
    pc.createDataChannel("x")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    config = BrokerConfig(host="127.0.0.1", port=0, path="/")
    stats: dict[str, Any] = {"answers": 0, "peak": 0, "peak_half_open": 0}
    go = anyio.Event()

    async with Broker(config) as broker, Peer("target", server=broker.url) as target:
        ws_base = "ws" + broker.url[4:] + "peerjs?key=peerjs&token=t&id="

        async def drain(ws: ClientConnection) -> None:
            async for message in ws:
                stats["answers"] += json.loads(message)["type"] == "ANSWER"

        async def watch() -> None:
            half_open = getattr(target, "half_open_connections", list)
            while True:
                stats["peak"] = max(stats["peak"], len(target.connections))
                stats["peak_half_open"] = max(stats["peak_half_open"], len(half_open()))
                await anyio.sleep(0.02)

        async def flood() -> None:
            async with anyio.create_task_group() as tg:
                sockets = []
                for n in range(args.ids):
                    ws = await connect(ws_base + f"attacker{n}", max_size=None)
                    await ws.recv()
                    sockets.append(ws)
                    tg.start_soon(drain, ws)
                for n in range(args.offers):
                    if n == args.offers - 30:
                        go.set()
                    await sockets[n % args.ids].send(offer("target", sdp, f"dc_flood{n}"))
                    if n % 10 == 9:
                        await anyio.sleep(args.spread * 10 / args.offers)
                await anyio.sleep(args.deadline + 5)
                tg.cancel_scope.cancel()

        async def call() -> str:
            await go.wait()
            async with Peer("caller", server=broker.url) as caller:
                started = time.monotonic()
                try:
                    with anyio.fail_after(args.deadline):
                        conn = await caller.connect("target", reliable=True)
                    opened = time.monotonic() - started
                    incoming = await target.accept()
                    await conn.send("ping")
                    assert await incoming.recv() == "ping"
                except Exception as exc:
                    return f"{type(exc).__name__} after {time.monotonic() - started:.1f} s: {exc}"
                return f"open in {opened:.2f} s"

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            tg.start_soon(flood)
            result = await call()
            tg.cancel_scope.cancel()
    await pc.close()
    print(
        f"{args.offers} OFFERs from {args.ids} id(s) over {args.spread:g} s: caller {result}; "
        f"target sent {stats['answers']} ANSWERs, held at most {stats['peak']} connections "
        f"({stats['peak_half_open']} half-open)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offers", type=int, default=300)
    parser.add_argument("--ids", type=int, default=1)
    parser.add_argument("--spread", type=float, default=3.0)
    parser.add_argument("--deadline", type=float, default=40.0)
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
