"""A peer in its own process, for tests that kill or freeze the remote side.

Usage: ``python deadpeer_process.py BROKER_URL PEER_ID {data,media}``

It registers ``PEER_ID`` on the broker and prints ``ready``; then it takes one
incoming data connection (``data``: it echoes every value back) or one call
(``media``: it answers with a tone and a small test pattern), prints ``open``
and serves until it is killed. Each line on stdout is flushed at once, so the
test can read them from a pipe.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

# This checkout's peerpy, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from peerpy import Peer
from peerpy.media import PatternVideoTrack, ToneAudioTrack


def say(line: str) -> None:
    print(line, flush=True)


async def serve_data(peer: Peer) -> None:
    conn = await peer.accept()
    say(f"open {conn.connection_id}")
    async for value in conn:
        await conn.send(value)
    say("closed")


async def serve_media(peer: Peer) -> None:
    call = await peer.accept_call()
    await call.answer([ToneAudioTrack(), PatternVideoTrack(width=96, height=64, fps=20.0)])
    say(f"open {call.connection_id}")
    await call.wait_closed()
    say("closed")


async def main(url: str, peer_id: str, mode: str) -> None:
    async with Peer(peer_id, server=url) as peer:
        say("ready")
        await (serve_data if mode == "data" else serve_media)(peer)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[3] not in ("data", "media"):
        sys.exit("usage: deadpeer_process.py BROKER_URL PEER_ID {data,media}")
    anyio.run(main, *sys.argv[1:])
