"""CPU per participant of a 1:1 peerpy call, aiortc against wrtc, paired in one run.

Run ``python bench/call_cpu.py`` (``--quick`` for a short smoke run). For each
profile (640x480 at 30 fps, 320x240 at 15 fps) and each backend it runs one
call between two processes, each a peerpy ``Peer`` that sends a tone and a
test pattern (:mod:`peerpy.media`: ``ToneAudioTrack``, ``PatternVideoTrack``)
and reads every frame it receives (``FrameCounter``); so each participant
encodes one audio and one video stream and decodes one of each, as in a real
1:1 call. aiortc encodes VP8/Opus with libvpx/libopus driven from Python;
wrtc runs libwebrtc's media engine (:mod:`peerpy.backends.wrtc_media`).

Each process measures its own CPU (``getrusage(RUSAGE_SELF)``: user + system,
every thread) over ``--seconds`` of steady media, after ``--warmup`` seconds
once frames flow, and the frames it received meanwhile. The figure per
participant is CPU seconds per second of call (1.0 = one core busy); the
ratio is wrtc over aiortc, paired profile by profile within the run (the
target: wrtc at most 0.4x aiortc). A third process measures the media source
alone (the pattern made and converted to I420, the tone), which both pay, to
give the ratio of the rest (codecs, RTP, transport, frame adaptation); the
bitrate sent (outbound-rtp ``bytesSent``) shows what each encoder chose. Both
backends run on uvloop when it is installed, as peerpy's CLI does. The broker
runs in this process (not counted); only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: wrtc's CPU per participant over aiortc's must be at most this.
TARGET_RATIO = 0.4


@dataclass(frozen=True)
class Profile:
    width: int
    height: int
    fps: int

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}@{self.fps}"


PROFILES = (Profile(640, 480, 30), Profile(320, 240, 15))


# --- One participant (a child process) ------------------------------------------


def cpu_seconds() -> float:
    """This process's CPU time so far (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def participant(args: argparse.Namespace) -> dict[str, Any]:
    """Make or answer the call, let media settle, then measure CPU and frames received."""
    import anyio

    from peerpy import Peer
    from peerpy.exceptions import PeerUnavailableError
    from peerpy.media import FrameCounter, PatternVideoTrack, ToneAudioTrack

    tracks = [ToneAudioTrack(), PatternVideoTrack(args.width, args.height, float(args.fps))]
    peer = Peer(
        args.id,
        server=args.broker,
        backend=args.backend,
        ice_servers=[],
        ice_addresses=["127.0.0.1"],
    )
    async with peer:
        if args.role == "callee":
            print("ready", flush=True)
            call = await peer.accept_call()
            await call.answer(tracks)  # type: ignore[arg-type]
        else:
            while True:
                try:
                    call = await peer.call(args.other, tracks)  # type: ignore[arg-type]
                    break
                except PeerUnavailableError:
                    await anyio.sleep(0.1)
        async with FrameCounter(await call.wait_stream()) as counter:
            await counter.wait(audio=5, video=3)
            await anyio.sleep(args.warmup)
            frames, sent = dict(counter.counts), await bytes_sent(call.peer_connection)
            cpu, start = cpu_seconds(), time.monotonic()
            await anyio.sleep(args.seconds)
            cpu, elapsed = cpu_seconds() - cpu, time.monotonic() - start
            sent = await bytes_sent(call.peer_connection) - sent
            received = {kind: counter.counts[kind] - frames[kind] for kind in frames}
        await call.close()
    return {
        "backend": peer.backend,
        "cpu": cpu / elapsed,
        "kbps": sent * 8 / elapsed / 1000,
        "video_fps": received["video"] / elapsed,
        "audio_fps": received["audio"] / elapsed,
    }


async def bytes_sent(pc: Any) -> int:
    """The RTP payload bytes ``pc`` sent so far (its outbound-rtp stats, audio and video)."""
    report = await pc.getStats()
    return sum(s.bytesSent for s in report.values() if s.type == "outbound-rtp")


async def source_only(args: argparse.Namespace) -> dict[str, Any]:
    """The CPU of making the media alone: the tracks read at their pace, video made I420.

    Both backends pay it before encoding (the pattern is RGB; the encoders take I420).
    """
    import anyio

    from peerpy.media import PatternVideoTrack, ToneAudioTrack

    async def drain(track: Any, convert: bool) -> None:
        while True:
            frame = await track.recv()
            if convert:
                frame.reformat(format="yuv420p")

    video = PatternVideoTrack(args.width, args.height, float(args.fps))
    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, video, True)
        tg.start_soon(drain, ToneAudioTrack(), False)
        await anyio.sleep(args.warmup)
        cpu, start = cpu_seconds(), time.monotonic()
        await anyio.sleep(args.seconds)
        cpu, elapsed = cpu_seconds() - cpu, time.monotonic() - start
        tg.cancel_scope.cancel()
    return {"backend": "source", "cpu": cpu / elapsed, "kbps": 0.0, "video_fps": 0.0,
            "audio_fps": 0.0}  # fmt: skip


def run_participant(args: argparse.Namespace) -> int:
    from peerpy.backends import run

    async def main() -> None:
        work = source_only if args.role == "source" else participant
        print(json.dumps(await work(args)), flush=True)

    run(main)
    return 0


# --- The run (the parent) --------------------------------------------------------


async def spawn(
    role: str,
    backend: str,
    profile: Profile,
    url: str,
    args: argparse.Namespace,
    ids: tuple[str, str],
) -> asyncio.subprocess.Process:
    mine, other = ids if role == "caller" else ids[::-1]
    command = [
        sys.executable, __file__, "--role", role, "--backend", backend, "--broker", url,
        "--id", mine, "--other", other, "--width", str(profile.width),
        "--height", str(profile.height), "--fps", str(profile.fps),
        "--seconds", str(args.seconds), "--warmup", str(args.warmup),
    ]  # fmt: skip
    env = dict(os.environ, PEERPY_ICE_SERVERS="", PEERPY_ICE_ADDRESSES="127.0.0.1")
    return await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT
    )


async def one_call(
    backend: str, profile: Profile, url: str, args: argparse.Namespace, n: int
) -> list[dict[str, Any]]:
    """Both participants' figures for one call on ``backend`` (``source``: no call)."""
    ids = (f"bench{n}a", f"bench{n}b")
    if backend == "source":
        process = await spawn("source", "aiortc", profile, url, args, ids)
        out, _ = await asyncio.wait_for(process.communicate(), args.seconds + args.warmup + 30)
        return [json.loads(out.decode().strip().splitlines()[-1])]
    callee = await spawn("callee", backend, profile, url, args, ids)
    assert callee.stdout is not None
    line = await asyncio.wait_for(callee.stdout.readline(), 30)
    if line.strip() != b"ready":
        raise RuntimeError(f"callee did not start: {line!r}")
    caller = await spawn("caller", backend, profile, url, args, ids)
    limit = args.seconds + args.warmup + 60
    results = []
    for process in (caller, callee):
        out, _ = await asyncio.wait_for(process.communicate(), limit)
        if process.returncode != 0:
            raise RuntimeError(f"a {backend} participant failed ({process.returncode})")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


async def run_all(
    args: argparse.Namespace,
) -> list[tuple[Profile, dict[str, list[dict[str, Any]]]]]:
    from peerpy_server import Broker, BrokerConfig

    table = []
    async with Broker(BrokerConfig(host="127.0.0.1", port=0)) as broker:
        n = 0
        for profile in PROFILES:
            rows: dict[str, list[dict[str, Any]]] = {"aiortc": [], "wrtc": [], "source": []}
            for _ in range(args.rounds):
                for backend in rows:  # paired: aiortc, wrtc, source, round after round
                    n += 1
                    rows[backend] += await one_call(backend, profile, broker.url, args, n)
            table.append((profile, rows))
    return table


def report(table: list[tuple[Profile, dict[str, list[dict[str, Any]]]]]) -> int:
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'profile':<14}{'backend':<8}{'CPU/participant':>16}{'kbit/s out':>12}"
          f"{'video fps in':>14}{'audio fps in':>14}")  # fmt: skip
    failed = False
    for profile, rows in table:
        cpu = {}
        for backend, results in rows.items():
            cpu[backend] = statistics.median(r["cpu"] for r in results)
            kbps = statistics.median(r["kbps"] for r in results)
            video = statistics.median(r["video_fps"] for r in results)
            audio = statistics.median(r["audio_fps"] for r in results)
            print(f"{profile.name:<14}{backend:<8}{cpu[backend]:>15.1%} {kbps:>11.0f} "
                  f"{video:>13.1f} {audio:>13.1f}")  # fmt: skip
        source = cpu["source"]
        engine = (cpu["wrtc"] - source) / max(cpu["aiortc"] - source, 1e-9)
        print(f"{profile.name:<14}without the source's CPU (the same on both): "
              f"wrtc/aiortc {engine:.2f}x")  # fmt: skip
        ratio = cpu["wrtc"] / cpu["aiortc"]
        ok = ratio <= TARGET_RATIO
        failed |= not ok
        verdict = "PASS" if ok else "FAIL"
        print(f"{profile.name:<14}wrtc/aiortc CPU per participant: {ratio:.2f}x "
              f"(target <= {TARGET_RATIO}x) {verdict}")  # fmt: skip
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per call")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=1, help="paired calls per profile")
    parser.add_argument("--quick", action="store_true", help="3 s calls, 1 s warm-up")
    # A participant's options (the run starts itself with them).
    parser.add_argument("--role", choices=["caller", "callee", "source"], help=argparse.SUPPRESS)
    for name in ("--backend", "--broker", "--id", "--other"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    for name in ("--width", "--height", "--fps"):
        parser.add_argument(name, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is not None:
        return run_participant(args)
    if args.quick:
        args.seconds, args.warmup = 3.0, 1.0
    from peerpy.backends import wrtc_installed

    if not wrtc_installed():
        print("wrtc is not installed: pip install 'peerpy-sdk[wrtc]'")
        return 2
    return report(asyncio.run(run_all(args)))


if __name__ == "__main__":
    sys.exit(main())
