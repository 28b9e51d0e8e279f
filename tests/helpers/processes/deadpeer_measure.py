"""Measure how long a connection takes to notice its remote process died.

Usage (from the repository root, inside a loopback-only network namespace)::

    python tests/helpers/processes/deadpeer_measure.py {data,media} {KILL,STOP} [SECONDS|none]

It starts our broker in-process and ``deadpeer_process.py`` as the remote,
opens a data connection or a call to it, waits 2 s, sends the signal and
prints how long our side took to close and with which error. ``SECONDS`` sets
``Timeouts.remote_gone`` (``none``: aioice's own consent checks); without it
the default applies. The figures in docs/dataconnection.md come from it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
from anyio.streams.text import TextReceiveStream

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "server"), str(ROOT / "protocol")]

from peerpy_server import Broker, BrokerConfig  # noqa: E402

from peerpy import Peer, Timeouts  # noqa: E402
from peerpy.media import ToneAudioTrack  # noqa: E402

REMOTE = Path(__file__).parent / "deadpeer_process.py"


async def measure(mode: str, signum: int, remote_gone: str | None) -> None:
    config = BrokerConfig(host="127.0.0.1", port=0, path="/myapp")
    async with Broker(config) as broker:
        remote_id = f"remote{os.getpid()}"
        process = await anyio.open_process(
            [sys.executable, str(REMOTE), broker.url, remote_id, mode], stdout=subprocess.PIPE
        )
        kwargs = {}
        if remote_gone is not None:
            seconds = None if remote_gone == "none" else float(remote_gone)
            kwargs["timeouts"] = Timeouts(remote_gone=seconds)
        try:
            assert process.stdout is not None
            lines = TextReceiveStream(process.stdout)
            text = ""
            while text.count("\n") < 1:
                text += await lines.receive()
            async with Peer(server=broker.url, **kwargs) as me:
                if mode == "data":
                    conn = await me.connect(remote_id)
                else:
                    conn = await me.call(remote_id, [ToneAudioTrack()], receive=["video"])
                while text.count("\n") < 2:
                    text += await lines.receive()
                await anyio.sleep(2)
                start = time.monotonic()
                process.send_signal(signum)
                with anyio.fail_after(120):
                    await conn.wait_closed()
                elapsed = time.monotonic() - start
                name = signal.Signals(signum).name
                setting = "default" if remote_gone is None else remote_gone
                print(
                    f"{mode} {name} remote_gone={setting}: closed after {elapsed:.1f} s, "
                    f"error={conn.error!r}",
                    flush=True,
                )
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            await process.wait()
            await process.aclose()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("data", "media"):
        sys.exit(__doc__)
    signum = getattr(signal, "SIG" + sys.argv[2])
    anyio.run(measure, sys.argv[1], signum, sys.argv[3] if len(sys.argv) == 4 else None)
