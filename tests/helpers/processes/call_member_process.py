"""A member of a room call in its own process, for the SFU tests that SIGKILL one of many.

Usage: ``python call_member_process.py SERVER_URL MEMBER_ID ROOM WIDTH HEIGHT FPS``

It joins ``ROOM``, calls it with a generated video (:class:`~peerpy.media.PatternVideoTrack`
of ``WIDTH`` x ``HEIGHT`` at ``FPS``), decodes every stream it receives until that
stream ends, and reports on stdout, one line each (its protocol with the test;
``T`` is ``time.monotonic()``, one clock for every process of the machine)::

    called                    joined, and room.call returned
    frame MEMBER              the first frame of MEMBER's video, decoded
    leave MEMBER T            the room's leave event for MEMBER
    ended MEMBER T            MEMBER's video track ended (its stream is gone)

It stays until killed.
"""

from __future__ import annotations

import sys
import time

import anyio
from aiortc.mediastreams import MediaStreamError

from peerpy import Peer
from peerpy.media import PatternVideoTrack
from peerpy.mediaconnection import MediaStream


def say(*words: object) -> None:
    print(*words, flush=True)


async def watch(member: str, stream: MediaStream) -> None:
    """Decode ``member``'s video until it ends."""
    video = stream.video
    if video is None:
        return
    first = True
    try:
        while True:
            frame = await video.recv()
            if first and frame.width > 0:
                say("frame", member)
                first = False
    except MediaStreamError:
        say("ended", member, time.monotonic())


async def main(server: str, member_id: str, room_name: str, size: str) -> None:
    width, height, fps = size.split()
    async with (
        Peer(member_id, server=server) as peer,
        peer.join(room_name) as room,
        anyio.create_task_group() as tg,
    ):
        room.on("stream", lambda member, stream: tg.start_soon(watch, member, stream))
        room.on("leave", lambda member: say("leave", member, time.monotonic()))
        await room.call([PatternVideoTrack(int(width), int(height), fps=float(fps))])
        say("called")
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4], " ".join(sys.argv[4:7]))
