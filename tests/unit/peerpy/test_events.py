"""Event names and handlers (peerpy.events) are typed: mypy catches a misspelt name.

The events themselves are tested with real peers (tests/integration/peerpy).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from ...helpers.brokers import ROOT


def test_misspelt_event_names_are_type_errors(tmp_path: Path) -> None:
    """mypy flags ``peer.on("conection", ...)`` and a handler of the wrong shape."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from peerpy import DataConnection, Peer
            from peerpy.sync import Peer as SyncPeer

            def on_conn(conn: DataConnection) -> None: ...
            def on_open(peer_id: str) -> None: ...

            peer = Peer()
            peer.on("connection", on_conn)
            peer.on("open", on_open)
            peer.on("conection", on_conn)  # line 11: misspelt
            peer.on("open", on_conn)  # line 12: wrong handler
            SyncPeer().on("opne", on_open)  # line 13: misspelt (sync)
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(snippet)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode in (0, 1), run.stderr  # mypy itself ran
    assert not run.stderr
    lines = sorted({int(line.split(":")[1]) for line in run.stdout.splitlines() if "error" in line})
    assert lines == [11, 12, 13], run.stdout


def test_a_handler_for_an_event_that_already_happened_runs_at_once() -> None:
    """on(..., replay=args) calls that handler alone now (a coroutine one is spawned);
    without replay nothing runs until emit."""
    import asyncio
    import logging

    from peerpy.events import EventEmitter

    spawned: list[object] = []
    emitter = EventEmitter(("open",), spawned.append, logging.getLogger("t"))
    calls: list[tuple[str, object]] = []
    emitter.on("open", lambda *args: calls.append(("first", args)))
    assert calls == []
    emitter.on("open", lambda *args: calls.append(("late", args)), replay=("alice",))
    assert calls == [("late", ("alice",))]

    async def coroutine_handler(peer_id: str) -> None:
        calls.append(("async", peer_id))

    emitter.on("open", coroutine_handler, replay=("alice",))
    assert len(spawned) == 1  # run in the owner's task group, as emit() does
    emitter.emit("open", "bob")
    assert calls[1:] == [("first", ("bob",)), ("late", ("bob",))]
    for run in spawned:
        asyncio.run(run())  # type: ignore[operator]
    assert calls[3:] == [("async", "alice"), ("async", "bob")]
