"""A video call: send a test pattern and tone (or a file), record what the other side sends.

Start a broker (``peerpy-server``), then in two terminals::

    python examples/video_call.py alice --record alice.mkv
    python examples/video_call.py bob --call alice --send movie.mp4 --seconds 10

``alice`` waits for a call and answers it; ``bob`` calls.  Each side sends a
generated colour-bar video and a 440 Hz tone unless ``--send FILE`` is given,
records the remote media to ``--record FILE`` (else just counts frames), and
hangs up after ``--seconds`` (the other side then closes too).  With
``--stats``, a live line shows the call's numbers (``await call.stats()``)
each second: round-trip time, frames sent and received per second, frames
dropped, jitter and packets lost.  A PeerJS page
can take either role: ``peer.call("alice", stream)`` or answer bob's call.

Between two peerpy peers the call survives a network change (a new address,
a link down for a while): the script prints ``reconnecting`` and ``resumed``
as they happen.  The resumed call brings a new remote stream (the ``stream``
event again, see docs/network.md); this script keeps counting or recording
the first one only.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator

import anyio
from aiortc import MediaStreamTrack

from peerpy import ConnectionStats, MediaConnection, MediaStream, Peer
from peerpy.media import FrameCounter, PatternVideoTrack, Recorder, ToneAudioTrack, play_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("id", help="our peer id")
    parser.add_argument("--call", metavar="ID", help="call this peer (default: wait for a call)")
    parser.add_argument("--send", metavar="FILE", help="a media file to send instead of a pattern")
    parser.add_argument("--record", metavar="FILE", help="record the remote media (.mkv, .mp4...)")
    parser.add_argument("--seconds", type=float, default=10.0, help="hang up after this long")
    parser.add_argument("--server", help="broker URL (default: PEERPY_SERVER or local)")
    parser.add_argument("--stats", action="store_true", help="show a live line of call stats")
    return parser.parse_args(argv)


@contextlib.asynccontextmanager
async def sink(stream: MediaStream, path: str | None) -> AsyncIterator[None]:
    """Record ``stream`` to ``path``, or count its frames, while inside."""
    if path:
        async with Recorder(path, stream):
            yield
        print(f"recorded {len(stream)} track(s) to {path}")
    else:
        async with FrameCounter(stream) as counter:
            yield
        print(f"received {counter.counts}")


def stats_line(stats: ConnectionStats) -> str:
    """The call's numbers on one line (``-`` for what the backend does not report)."""

    def shown(value: float | None, unit: str = "", scale: float = 1.0) -> str:
        return "-" if value is None else f"{value * scale:.0f}{unit}"

    parts = [f"rtt {shown(stats.round_trip_time, ' ms', 1000)}"]
    for track in stats.tracks:
        if track.kind != "video":
            continue
        if track.direction == "outbound":
            parts.append(f"sent {shown(track.frames_per_second)} fps")
        else:
            parts.append(
                f"received {shown(track.frames_per_second)} fps, "
                f"{shown(track.frames_dropped)} dropped, "
                f"jitter {shown(track.jitter, ' ms', 1000)}"
            )
    parts.append(f"lost {shown(stats.packets_lost)} packets")
    return " | ".join(parts)


async def show_stats(call: MediaConnection) -> None:
    """Rewrite one line on standard error with the call's numbers, each second."""
    while not call.closed:
        await anyio.sleep(1)
        print(f"\r{stats_line(await call.stats())}\033[K", end="", file=sys.stderr, flush=True)


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    source = play_file(args.send, loop=True) if args.send else None
    tracks: list[MediaStreamTrack] = (
        source.tracks if source else [ToneAudioTrack(), PatternVideoTrack(640, 480, fps=30)]
    )
    try:
        async with Peer(args.id, server=args.server) as peer:
            call: MediaConnection
            if args.call:
                call = await peer.call(args.call, tracks, metadata={"from": "video_call.py"})
            else:
                print(f"{peer.id} is waiting for a call")
                call = await peer.accept_call()
                print(f"{call.peer} calls (metadata {call.metadata!r}); answering")
                await call.answer(tracks)
            call.on("reconnecting", lambda error: print(f"path lost ({error}): reconnecting"))
            call.on("resumed", lambda: print(f"resumed over {call.route}"))
            stream = await call.wait_stream()
            print(f"in a call with {call.peer}: receiving {stream}")
            async with call, sink(stream, args.record), anyio.create_task_group() as tg:
                if args.stats:
                    tg.start_soon(show_stats, call)
                with anyio.move_on_after(args.seconds):
                    await call.wait_closed()
                remote_hung_up = call.closed
                tg.cancel_scope.cancel()
                if args.stats:
                    print(file=sys.stderr)  # end the live line
            ending = f"hung up after {args.seconds:g} s"
            print("the other side hung up" if remote_hung_up else ending)
    finally:
        if source is not None:
            source.stop()


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": sys.platform != "win32"})
