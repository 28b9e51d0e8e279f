"""A lab peer streaming sequence-numbered messages, for the resumption cases.

``recv ID``: register as ID, accept one data connection and read JSON messages
``{"seq": n}`` until ``{"end": n}``; then print ``{"event": "done", ...}``: how
many arrived, whether each came once and in order, the longest silence
between two messages (``stall``) and when it ended (``stall_end``, on the
monotonic clock of the lab, shared by its namespaces).  ``send ID TARGET``:
connect to TARGET and send ``--rate`` messages a second for ``--seconds``
(with ``--wait``: from a line on stdin on), then the end marker.  Both print
``{"event": ...}`` lines for ``open``, ``reconnecting`` and ``resumed`` (with
the route, the time and ``same_pc``: whether the peer connection is still the
first one, as after an ICE restart), and ``error``; and for the peer's broker
session, ``peer-error`` (the session lost, why) and ``registered`` (registered
again by ``auto_reconnect``), with the time.

Timeouts are short for the lab: ``remote_gone`` 3 s, ``resume`` 45 s.  With
``STREAM_LOG=1``, peerpy's log (INFO, with the monotonic time) goes to stderr
(the resumption tests keep it in a file, for a failure).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from typing import Any

import anyio

from peerpy import DataConnection, Peer, Timeouts
from peerpy.exceptions import PeerError

TIMEOUTS = Timeouts(remote_gone=3.0, resume=45.0, reconnect_max=1.0)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def watch(conn: DataConnection) -> None:
    """Report the connection's resumption events."""
    conn.on("reconnecting", lambda error: emit(event="reconnecting", t=time.monotonic(),
                                               error=str(error)))  # fmt: skip
    first = conn.peer_connection  # an ICE restart (two wrtc peers) keeps it
    conn.on("resumed", lambda: emit(event="resumed", t=time.monotonic(), route=str(conn.route),
                                    generation=conn.generation,
                                    same_pc=conn.peer_connection is first))  # fmt: skip


async def receive(conn: DataConnection) -> None:
    expected, duplicates, disorder = 0, 0, 0
    last = time.monotonic()
    stall, stall_end = 0.0, last
    async for message in conn:
        now = time.monotonic()
        if "end" in message:
            emit(event="done", received=expected, total=message["end"], duplicates=duplicates,
                 disorder=disorder, stall=round(stall, 2), stall_end=stall_end)  # fmt: skip
            return
        seq = message["seq"]
        if seq < expected:
            duplicates += 1
            continue
        if seq > expected:
            disorder += 1
        if now - last > stall:
            stall, stall_end = now - last, now
        expected, last = seq + 1, now
    emit(event="error", error=f"closed after {expected} messages: {conn.error}")


class _Monotonic(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{time.monotonic():.3f} {super().format(record)}"


async def main(argv: list[str]) -> None:
    if os.environ.get("STREAM_LOG") == "1":
        handler = logging.StreamHandler()
        handler.setFormatter(_Monotonic("%(name)s %(levelname)s %(message)s"))
        logging.getLogger("peerpy").addHandler(handler)
        logging.getLogger("peerpy").setLevel(logging.INFO)
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("send", "recv"))
    parser.add_argument("id")
    parser.add_argument("target", nargs="?")
    parser.add_argument("--server", required=True)
    parser.add_argument("--rate", type=float, default=125.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--wait", action="store_true", help="stream after a line on stdin")
    args = parser.parse_args(argv)
    async with Peer(args.id, server=args.server, ice_servers=[], timeouts=TIMEOUTS,
                    auto_reconnect=True) as peer:  # fmt: skip
        peer.on("error", lambda error: emit(event="peer-error", t=time.monotonic(),
                                            error=str(error)))  # fmt: skip
        opens = itertools.count()  # the first "open" replays the registration we are in
        peer.on("open", lambda _id: next(opens) and emit(event="registered", t=time.monotonic()))
        try:
            if args.role == "recv":
                emit(event="ready")
                conn = await peer.accept()
                watch(conn)
                emit(event="open", route=str(conn.route), backend=conn.backend)
                await receive(conn)
            else:
                conn = await peer.connect(args.target, reliable=True, serialization="json")
                watch(conn)
                emit(event="open", route=str(conn.route), backend=conn.backend)
                if args.wait:  # the test starts every pair's stream at once
                    await anyio.to_thread.run_sync(sys.stdin.readline)
                count = int(args.rate * args.seconds)
                start = time.monotonic()
                for seq in range(count):
                    await conn.send({"seq": seq, "pad": "x" * 64})
                    await anyio.sleep(max(0.0, start + (seq + 1) / args.rate - time.monotonic()))
                await conn.send({"end": count})
                await conn.close(flush=True)
        except PeerError as exc:
            emit(event="error", error=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
