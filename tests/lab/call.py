"""A lab peer in a resumable call with a synthetic video track, for lab case 6.

``ID``: register as ID and answer one call; ``ID TARGET``: call TARGET.
Each side sends a small scrolling test pattern (20 frames a second) and
decodes the remote's.  Both print ``{"event": ...}`` lines, with the time
``t`` on the monotonic clock of the lab (shared by its namespaces):

- ``ready`` (answer: registered), ``open`` (the first video frames decoded);
- ``reconnecting`` (with the error), ``stream`` (the remote's new tracks),
  ``resumed`` (with the generation);
- ``frames-after-resume``: :data:`FRAMES` video frames decoded from the stream
  announced with the last resume (``first``: when the first of them was);
- ``done`` (the call closed: the caller hangs up when a line or EOF comes on its
  standard input; ``error``: why the call ended, ``null`` for a hang-up) or
  ``error``;
- ``peer-error`` and ``registered``: the peer's broker session lost, registered
  again by ``auto_reconnect``.

Timeouts are short for the lab: ``remote_gone`` 3 s, ``resume`` 45 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from typing import Any

import anyio
import anyio.to_thread

from peerpy import Peer, Timeouts
from peerpy.exceptions import ConnectionClosedError, PeerError
from peerpy.media import FrameCounter, PatternVideoTrack
from peerpy.mediaconnection import MediaConnection, MediaStream

TIMEOUTS = Timeouts(remote_gone=3.0, resume=45.0, reconnect_max=1.0)
#: Video frames decoded after a resume before ``frames-after-resume`` (half a second).
FRAMES = 10


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def now() -> float:
    return time.monotonic()


class Viewer:
    """Decodes the call's video, again from each new stream a resume announces."""

    def __init__(self, call: MediaConnection) -> None:
        self.call = call
        self.streams: list[MediaStream] = []
        self._resumed = anyio.Event()
        call.on("reconnecting", lambda error: emit(event="reconnecting", t=now(),
                                                   error=str(error)))  # fmt: skip
        call.on("stream", self._on_stream)
        call.on("resumed", self._on_resumed)

    def _on_stream(self, stream: MediaStream) -> None:
        self.streams.append(stream)
        emit(event="stream", t=now(), tracks=[track.kind for track in stream])

    def _on_resumed(self) -> None:
        emit(event="resumed", t=now(), generation=self.call.generation)
        self._resumed.set()

    async def first_frames(self) -> None:
        async with FrameCounter(await self.call.wait_stream()) as counter:
            await counter.wait(video=3)
        emit(event="open", t=now(), backend=self.call.backend, route=str(self.call.route))

    async def frames_after_resume(self) -> None:
        """Wait for a resume, then FRAMES frames of the latest stream announced (the one
        that replaced it if its tracks end first: the call resumed again, or a second
        ``stream`` event of the same resume replaced it)."""
        await self._resumed.wait()
        while True:
            stream = self.streams[-1]
            try:
                async with FrameCounter(stream.video_tracks) as counter:
                    await counter.wait(video=1)
                    first = now()
                    await counter.wait(video=FRAMES)
            except Exception as exc:  # the FrameCounter's task group wraps the end
                if not _ended(exc):
                    raise
                while stream is self.streams[-1]:  # noqa: ASYNC110 - the one that replaces it
                    await anyio.sleep(0.05)
                continue
            emit(event="frames-after-resume", t=now(), first=first, frames=FRAMES,
                 generation=self.call.generation)  # fmt: skip
            return


def _ended(exc: BaseException) -> bool:
    """Whether ``exc`` (maybe an exception group) is only tracks that ended."""
    if isinstance(exc, ConnectionClosedError):
        return True
    inner = getattr(exc, "exceptions", None)
    return bool(inner) and all(_ended(e) for e in inner)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("id")
    parser.add_argument("target", nargs="?", help="the peer to call (else answer a call)")
    parser.add_argument("--server", required=True)
    args = parser.parse_args(argv)
    async with Peer(args.id, server=args.server, ice_servers=[], timeouts=TIMEOUTS,
                    auto_reconnect=True) as peer:  # fmt: skip
        peer.on("error", lambda error: emit(event="peer-error", t=now(), error=str(error)))
        opens = itertools.count()  # the first "open" replays the registration we are in

        def registered(_id: str) -> None:
            if next(opens):
                emit(event="registered", t=now())

        peer.on("open", registered)
        video = PatternVideoTrack(width=96, height=64, fps=20.0)
        try:
            if args.target is None:
                emit(event="ready")
                call = await peer.accept_call()
                viewer = Viewer(call)
                await call.answer([video])
            else:
                call = await peer.call(args.target, [video])
                viewer = Viewer(call)
            await viewer.first_frames()
            await viewer.frames_after_resume()
            if args.target is not None:
                await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                await call.close()
            else:
                await call.wait_closed()
            error = call.error
            emit(event="done", t=now(), error=None if error is None else str(error))
        except PeerError as exc:
            emit(event="error", t=now(), error=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
