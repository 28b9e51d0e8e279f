"""A lab peer: run in a lab namespace, report on stdout as JSON lines.

``listen ID``: register as ID, accept one data connection, echo every message
back until the other side closes.  ``connect ID TARGET``: register as ID,
connect to TARGET, send ``--size`` random bytes, check the echo is identical.
``answer ID`` / ``call ID TARGET``: a media call with a tone and a test
pattern both ways; each side reports ``{"event": "media"}`` once it decoded
frames, and the caller hangs up when a line arrives on its stdin.

Both print ``{"event": "open", "route": ...}`` once the connection is open
(the caller adds ``opened_in``, the seconds ``connect()`` took) and the caller
prints ``{"event": "done", ...}`` with the round trip's time.  ICE servers come
from ``--ice`` (a JSON list of ``{urls, username, credential}``); ``--ice
broker`` leaves them unset so the peer asks its broker.  Every step is bounded
by ``--deadline`` seconds.  ``--backend`` picks the WebRTC backend (aiortc by
default) and ``--ice-addresses`` the local addresses ICE may use.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Any

import anyio
from aiortc import MediaStreamTrack, RTCIceServer

from peerpy import MediaConnection, Peer, Timeouts
from peerpy.media import FrameCounter, PatternVideoTrack, ToneAudioTrack
from peerpy.route import Route


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def route_json(route: Route | None) -> dict[str, Any] | None:
    if route is None:
        return None
    return {
        "local_type": route.local_type,
        "remote_type": route.remote_type,
        "local_address": list(route.local_address),
        "remote_address": list(route.remote_address),
        "protocol": route.protocol,
        "relay_protocol": route.relay_protocol,
        "relay_server": list(route.relay_server) if route.relay_server else None,
        "relayed": route.relayed,
        "text": str(route),
    }


def ice_servers(spec: str) -> list[RTCIceServer] | None:
    if spec == "broker":
        return None
    return [
        RTCIceServer(s["urls"], s.get("username"), s.get("credential")) for s in json.loads(spec)
    ]


async def listen(peer: Peer) -> None:
    conn = await peer.accept()
    await conn.wait_open()
    emit(event="open", route=route_json(conn.route))
    async for message in conn:
        await conn.send(message)
    emit(event="closed", route=route_json(conn.route))


async def connect(peer: Peer, target: str, size: int) -> None:
    asked = time.monotonic()
    conn = await peer.connect(target)
    opened_in = round(time.monotonic() - asked, 3)
    emit(event="open", route=route_json(conn.route), opened_in=opened_in)
    payload = os.urandom(size)
    started = time.monotonic()
    await conn.send(payload)
    echo = await conn.recv()
    seconds = time.monotonic() - started
    same = (
        isinstance(echo, bytes)
        and hashlib.sha256(echo).digest() == hashlib.sha256(payload).digest()
    )
    emit(event="done", ok=same, bytes=len(payload), seconds=round(seconds, 3),
         route=route_json(conn.route))  # fmt: skip
    await conn.close(flush=True)


async def count_frames(call: MediaConnection) -> None:
    stream = await call.wait_stream()
    async with FrameCounter(stream) as counter:
        await counter.wait(audio=10, video=5)
    video = counter.last["video"]
    emit(event="media", counts=counter.counts, size=[video.width, video.height],
         route=route_json(call.route))  # fmt: skip


def tracks() -> list[MediaStreamTrack]:
    return [ToneAudioTrack(), PatternVideoTrack(width=96, height=64, fps=20.0)]


async def answer(peer: Peer) -> None:
    call = await peer.accept_call()
    await call.answer(tracks())
    await count_frames(call)
    await call.wait_closed()


async def call(peer: Peer, target: str) -> None:
    call = await peer.call(target, tracks())
    await count_frames(call)
    await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    await call.close()


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["listen", "connect", "answer", "call"])
    parser.add_argument("id")
    parser.add_argument("target", nargs="?")
    parser.add_argument("--server", required=True)
    parser.add_argument("--ice", default="[]")
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--deadline", type=float, default=40.0)
    parser.add_argument("--negotiation", type=float, default=30.0)
    parser.add_argument("--backend", default="aiortc", choices=["aiortc", "wrtc", "auto"])
    parser.add_argument("--ice-addresses", help="comma-separated NetworkPolicy.local_addresses")
    args = parser.parse_args(argv)
    os.environ.pop("PEERPY_ICE_ADDRESSES", None)
    if args.ice == "broker":
        os.environ.pop("PEERPY_ICE_SERVERS", None)
    with anyio.fail_after(args.deadline):
        timeouts = Timeouts(negotiation=args.negotiation)
        servers = ice_servers(args.ice)
        addresses = args.ice_addresses.split(",") if args.ice_addresses else None
        async with Peer(
            args.id,
            server=args.server,
            ice_servers=servers,
            ice_addresses=addresses,
            timeouts=timeouts,
            backend=args.backend,
        ) as peer:
            emit(
                event="registered",
                ice=[s.urls for s in peer.configuration.iceServers or []],
                backend=peer.backend,
            )
            if args.role == "listen":
                await listen(peer)
            elif args.role == "connect":
                await connect(peer, args.target, args.size)
            elif args.role == "answer":
                await answer(peer)
            else:
                await call(peer, args.target)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(anyio.run(main, sys.argv[1:]))
    except Exception as exc:
        emit(event="error", error=f"{type(exc).__name__}: {exc}")
        sys.exit(1)
