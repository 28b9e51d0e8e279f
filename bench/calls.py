"""Room calls: N participants as N processes, each sending video and audio, in mesh and via Janus.

Run as root in a private network namespace (the Janus of the SFU rows gets a
veth pair there, as in the tests):
``unshare -n bash -c 'ip link set lo up && python bench/calls.py'``
(``--sizes 3,4,6,8`` and ``--modes mesh,sfu`` by default; ``--quick`` for 3 and
4 with short phases).  For each mode and room size N it:

1. starts our broker (``python -m peerpy_server``, with ``--janus`` in the SFU
   mode, a real Janus started by ``tests/helpers/janus_support.py``) and N
   member processes, which join one room and wait until each sees the N - 1
   others;
2. tells every member to call the room at the same instant with a generated
   ``--width`` x ``--height`` video at ``--fps`` (320x240 at 15 fps) and a tone
   (48 kHz Opus); each member decodes every video and audio track it receives
   (``track.recv()`` in a loop) and notes when the first video frame of each
   other member came: the *time to first frame*, from the call instant;
3. once every member has a frame from each other one (or ``--first`` s passed)
   and one more second, measures ``--seconds`` (10): each member's CPU time
   (``/proc/PID/stat``, every thread: encoders, decoders, the loop) in ms
   per second; the UDP bytes it sent (its datagram transports'
   ``sendto`` counted: media, RTCP, ICE, DTLS and the room's data channels),
   as kbit/s; the video frames it decoded per second from each other member
   (*fps per remote stream*); and, in the SFU mode, Janus's CPU;
4. stops every process by PID.

One table row per mode and size, with the load average (1 min) before and after
and the number of cores: the machine may be shared.  Members run on aiortc (the
room's media is aiortc), with ICE on 127.0.0.1 and no ICE server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rooms import ROOT, free_port, percentile, processes, read, tell

ROOM = "call"


# -- a member (a process of its own) -------------------------------------------------------


async def member(args: argparse.Namespace) -> None:
    """One participant: join, call on the coordinator's word, decode, report."""
    import asyncio.selector_events

    import anyio
    from aiortc.mediastreams import MediaStreamError

    from peerpy import Peer
    from peerpy.media import PatternVideoTrack, ToneAudioTrack

    sent = [0]  # UDP bytes this process sent
    transport = asyncio.selector_events._SelectorDatagramTransport
    original = transport.sendto

    def counted(self: Any, data: Any, addr: Any = None) -> None:
        sent[0] += len(data)
        original(self, data, addr)

    transport.sendto = counted  # type: ignore[method-assign]

    async def line() -> str:
        text = await anyio.to_thread.run_sync(sys.stdin.readline)
        return text.strip()

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    first: dict[str, float] = {}  # other member -> monotonic time of its first video frame
    frames: dict[str, list[float]] = {}  # other member -> arrival times of its video frames

    async def decode(who: str, track: Any) -> None:
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    now = time.monotonic()
                    first.setdefault(who, now)
                    frames.setdefault(who, []).append(now)
        except MediaStreamError:
            pass

    async with (
        Peer(args.member, server=args.server) as peer,
        peer.join(ROOM) as room,
        anyio.create_task_group() as tg,
    ):

        def stream(who: str, received: Any) -> None:
            for track in received.tracks:
                tg.start_soon(decode, who, track)

        room.on("stream", stream)
        while len(room.members) < args.count - 1:  # noqa: ASYNC110 - a benchmark's poll
            await anyio.sleep(0.01)
        say(joined=True)
        at = float((await line()).split()[1])  # "call <monotonic instant>"
        await anyio.sleep(max(0.0, at - time.monotonic()))
        video = PatternVideoTrack(args.width, args.height, fps=args.fps)
        await room.call([video, ToneAudioTrack()])
        while len(first) < args.count - 1 and time.monotonic() < at + args.first:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        say(first={who: t - at for who, t in first.items()})
        _, start, seconds = (await line()).split()  # "measure <monotonic start> <seconds>"
        begin, end = float(start), float(start) + float(seconds)
        await anyio.sleep(max(0.0, begin - time.monotonic()))
        sent_before = sent[0]
        await anyio.sleep(max(0.0, end - time.monotonic()))
        upload = sent[0] - sent_before
        fps = {who: sum(begin <= t < end for t in times) / (end - begin) for who, times in frames.items()}  # fmt: skip # noqa: E501
        say(upload=upload / (end - begin), fps=fps)
        await line()  # "leave"
        tg.cancel_scope.cancel()


# -- the coordinator -----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time of a process in seconds, every thread including those that ended (``stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def environment() -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "protocol"), str(ROOT / "server"), os.environ.get("PYTHONPATH", "")]  # fmt: skip # noqa: E501
    return {
        **os.environ,
        "PEERPY_ICE_SERVERS": "",
        "PEERPY_ICE_ADDRESSES": "127.0.0.1",
        "PEERPY_BACKEND": "aiortc",
        "PYTHONPATH": os.pathsep.join(paths),
    }


def run_size(mode: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one call of ``count`` members in ``mode``; return its figures."""
    from tests.helpers.janus_support import ADMIN_KEY, JanusServer

    env = environment()
    port = free_port()
    janus = JanusServer() if mode == "sfu" else None
    broker_args = [sys.executable, "-m", "peerpy_server", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip # noqa: E501
    janus_pid = None
    if janus is not None:
        janus.start()
        assert janus.proc is not None
        janus_pid = janus.proc.pid
        broker_args += ["--janus", janus.url, "--janus-admin-key", ADMIN_KEY]
    try:
        with processes() as started:
            broker = subprocess.Popen(
                broker_args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=env, text=True,
            )  # fmt: skip
            started.append(broker)
            time.sleep(1.0)  # the broker listens (and reaches Janus)
            members = []
            for n in range(count):
                argv = [sys.executable, __file__, "--member", f"m{n:02d}", "--server",
                        f"http://127.0.0.1:{port}/", "--count", str(count), "--width",
                        str(args.width), "--height", str(args.height), "--fps", str(args.fps),
                        "--first", str(args.first)]  # fmt: skip
                process = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
                )
                started.append(process)
                members.append(process)
            deadline = time.monotonic() + 60 + 5 * count
            for process in members:
                read(process, deadline)  # joined
            time.sleep(1.0)  # let the imports' and the data mesh's CPU settle
            load_before = os.getloadavg()[0]
            at = time.monotonic() + 0.5
            for process in members:
                tell(process, f"call {at}")
            deadline = at + args.first + 30
            firsts = [read(p, deadline)["first"] for p in members]
            begin = time.monotonic() + 1.0
            for process in members:
                tell(process, f"measure {begin} {args.seconds}")
            time.sleep(max(0.0, begin - time.monotonic()))
            pids = [p.pid for p in members] + ([janus_pid] if janus_pid else [])
            cpu_before = {pid: cpu_seconds(pid) for pid in pids}
            time.sleep(args.seconds)
            cpu = {pid: (cpu_seconds(pid) - cpu_before[pid]) / args.seconds for pid in pids}
            reports = [read(p, time.monotonic() + 30) for p in members]
            load_after = os.getloadavg()[0]
            for process in members:
                tell(process, "leave")
    finally:
        if janus is not None:
            janus.remove()
    streams = count * (count - 1)
    fps = [f for r in reports for f in r["fps"].values()]
    fps += [0.0] * (streams - len(fps))  # a stream that never decoded a frame
    ttff = [t for f in firsts for t in f.values()]
    return {
        "mode": mode,
        "members": count,
        "cpu_ms": statistics.mean(cpu[p.pid] for p in members) * 1000,
        "upload_kbps": statistics.mean(r["upload"] for r in reports) * 8 / 1000,
        "fps_median": statistics.median(fps),
        "fps_min": min(fps),
        "first_p50": percentile(ttff, 0.5),
        "first_max": max(ttff) if len(ttff) == streams else float("inf"),
        "missing": streams - len(ttff),
        "janus_ms": cpu[janus_pid] * 1000 if janus_pid else None,
        "load": (load_before, load_after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,4,6,8", help="call sizes (default 3,4,6,8)")
    parser.add_argument("--modes", default="mesh,sfu", help="mesh, sfu or both (default)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured phase (10 s)")
    parser.add_argument("--first", type=float, default=30.0, help="wait for first frames (30 s)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="sizes 3 and 4, 4 s phases")
    for flag, kind in {"--member": str, "--server": str, "--count": int}.items():
        parser.add_argument(flag, type=kind, help=argparse.SUPPRESS)  # a member's own
    args = parser.parse_args()
    if args.member is None:
        coordinate(args)
    else:
        import anyio

        anyio.run(member, args)


def coordinate(args: argparse.Namespace) -> None:
    """Run each mode and size; print the table."""
    if args.quick:
        args.sizes, args.seconds = "3,4", 4.0
    print(
        f"room calls, {args.width}x{args.height} at {args.fps:g} fps + Opus, on {os.cpu_count()} "
        "cores; load average (1 min) before/after each row"
    )
    print(
        "| mode | N | CPU/participant | upload/participant | fps per remote stream (median, min) "
        "| first frame (p50, max) | Janus CPU | load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            r = run_size(mode, size, args)
            janus = f"{r['janus_ms']:.0f} ms/s" if r["janus_ms"] is not None else "-"
            missing = f" ({r['missing']} never)" if r["missing"] else ""
            print(
                f"| {r['mode']} | {r['members']} | {r['cpu_ms']:.0f} ms/s "
                f"| {r['upload_kbps']:.0f} kbit/s | {r['fps_median']:.1f}, {r['fps_min']:.1f} "
                f"| {r['first_p50']:.2f} s, {r['first_max']:.2f} s{missing} | {janus} "
                f"| {r['load'][0]:.2f} / {r['load'][1]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
