"""An 8-party call through a real Janus: 8 member processes, every feed decoded by every other
member, one member SIGKILLed mid-call and seen gone by the rest within the dead-peer bound."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from peerpy.config import Timeouts

from ...helpers.janus_support import JanusServer
from ...helpers.processes import PeerProcess
from .test_room_media import broker

pytestmark = pytest.mark.anyio

SCRIPT = Path(__file__).parents[2] / "helpers" / "processes" / "call_member_process.py"
#: Small generated video: 8 encoders and 56 decoders share the test machine's 2 cores.
VIDEO = ("160", "120", "5")


@contextlib.asynccontextmanager
async def members(url: str, ids: list[str], logs: Path) -> AsyncIterator[dict[str, PeerProcess]]:
    """One ``call_member_process.py`` per id, its lines collected and its stderr in
    ``logs/ID.err``; each SIGKILLed (by PID) on the way out."""
    started: dict[str, PeerProcess] = {}
    async with anyio.create_task_group() as tg:
        try:
            for member_id in ids:
                with open(logs / f"{member_id}.err", "wb") as stderr:  # noqa: ASYNC230 - tmp
                    process = await anyio.open_process(
                        [sys.executable, str(SCRIPT), url, member_id, "call", *VIDEO],
                        stderr=stderr,
                    )
                started[member_id] = PeerProcess(process)
                tg.start_soon(started[member_id].read_lines)
            yield started
        finally:
            with anyio.CancelScope(shield=True):
                for member in started.values():
                    if member.process.returncode is None:
                        member.process.kill()
                    await member.process.wait()
                    await member.process.aclose()
            tg.cancel_scope.cancel()


async def test_eight_members_call_through_janus_and_one_crashes(
    janus: JanusServer, peer_id: str, tmp_path: Path
) -> None:
    """8 processes call one room through Janus: each decodes a frame of each of the 7 others;
    SIGKILL one: each of the 7 left gets its ``leave`` event and sees its video end within the
    dead-peer bound (Timeouts.remote_gone, 8 s)."""
    ids = [f"{peer_id}{n}" for n in range(8)]
    bound = Timeouts().remote_gone
    async with broker(janus) as running, members(running.url, ids, tmp_path) as processes:
        for member_id, member in processes.items():
            await member.wait_line("called", within=60)
            for other in ids:
                if other != member_id:
                    await member.wait_line(f"frame {other}", within=30)
        victim = ids[3]
        processes[victim].signal(signal.SIGKILL)
        killed = time.monotonic()
        for member_id, member in processes.items():
            if member_id == victim:
                continue
            for what in ("leave", "ended"):
                index = await member.wait_line(f"{what} {victim}", within=bound + 2)
                took = float(member.lines[index].split()[2]) - killed
                assert took < bound, f"{member_id} saw {what} after {took:.1f} s"
        for member in processes.values():  # nobody else was seen leaving
            assert all(line.split()[1] == victim for line in member.lines if line[:6] == "leave ")
