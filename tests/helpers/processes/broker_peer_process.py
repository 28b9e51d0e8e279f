"""A peer in its own process, for tests that SIGSTOP or SIGKILL it.

Usage: ``python broker_peer_process.py SERVER_URL PEER_ID``

It registers with ``auto_reconnect=True``, echoes every value on every data
connection it accepts, and reports on stdout, one line each (its protocol with
the test)::

    ready ID                 registered
    event open ID            registered again
    event disconnected ID    lost the broker
    event error TYPE NAME    an error event: PeerJS type and exception class
    accepted REMOTE          a data connection is open
"""

from __future__ import annotations

import sys

import anyio

from peerpy import DataConnection, Peer


def say(*words: object) -> None:
    print(*words, flush=True)


async def echo(conn: DataConnection) -> None:
    async for value in conn:
        await conn.send(value)


async def main(server: str, peer_id: str) -> None:
    async with Peer(peer_id, server=server, auto_reconnect=True) as peer:
        peer.on("open", lambda id_: say("event open", id_))
        peer.on("disconnected", lambda id_: say("event disconnected", id_))
        peer.on("error", lambda error: say("event error", error.type, type(error).__name__))
        say("ready", peer.id)
        async with anyio.create_task_group() as tg:
            async for conn in peer:
                say("accepted", conn.peer)
                tg.start_soon(echo, conn)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
