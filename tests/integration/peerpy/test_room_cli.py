"""``peerpy chat --room`` and examples/room_chat.py: group chats between processes."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerpy.cli import main

from ...helpers.brokers import threaded_peerpy_server

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "room_chat.py"


class Chatter:
    """One ``peerpy chat --room`` process (or ``script``): type lines in, wait for lines out."""

    def __init__(self, url: str, *args: str, script: Path | None = None) -> None:
        argv = (
            [sys.executable, str(script), *args]
            if script is not None
            else [sys.executable, "-m", "peerpy.cli", "chat", *args, "--server", url]
        )
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PEERPY_BACKEND": "aiortc", "PEERPY_SERVER": url},
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, start: str, timeout: float = 30) -> str:
        """The next line starting with ``start`` (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line.startswith(start):
                return line

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def end(self) -> int:
        """End the input (Ctrl-D); return the exit status."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def url() -> Iterator[str]:
    with threaded_peerpy_server() as broker_url:
        yield broker_url


def test_a_group_chat_between_processes(url: str, peer_id: str) -> None:
    """Three processes join a room: each sees the others join, talk and leave, by name."""
    chatters: list[Chatter] = []
    try:
        alice = Chatter(url, peer_id + "a", "--room", "lobby", "--name", "Alice")
        chatters.append(alice)
        assert alice.expect("* in room") == (
            "* in room lobby as Alice with nobody else yet; type lines, end with Ctrl-D"
        )
        bob = Chatter(url, "--room", "lobby", "--name", "Bob")  # no id: the broker gives one
        chatters.append(bob)
        assert bob.expect("* in room").startswith("* in room lobby as Bob with Alice;")
        alice.expect("* Bob joined")
        carol = Chatter(url, peer_id + "c", "--room", "lobby")  # no name: the id shows
        chatters.append(carol)
        assert carol.expect("* in room").startswith("* in room lobby as ")
        alice.expect(f"* {peer_id}c joined")
        bob.type("hello, room")
        assert alice.expect("Bob:") == "Bob: hello, room"
        assert carol.expect("Bob:") == "Bob: hello, room"
        alice.type("hi Bob")
        assert bob.expect("Alice:") == "Alice: hi Bob"
        assert bob.end() == 0
        alice.expect("* Bob left")
        carol.expect("* Bob left")
    finally:
        for chatter in chatters:
            chatter.stop()


def test_the_room_chat_example(url: str) -> None:
    """examples/room_chat.py: two members see each other and talk, by name."""
    chatters: list[Chatter] = []
    try:
        alice = Chatter(url, "Alice", "den", script=EXAMPLE)
        chatters.append(alice)
        assert alice.expect("* in den") == "* in den with nobody yet"
        bob = Chatter(url, "Bob", "den", script=EXAMPLE)
        chatters.append(bob)
        assert bob.expect("* in den") == "* in den with Alice"
        alice.expect("* Bob joined")
        bob.type("hi all")
        assert alice.expect("Bob:") == "Bob: hi all"
        assert bob.end() == 0
        alice.expect("* Bob left")
    finally:
        for chatter in chatters:
            chatter.stop()


def test_room_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """A REMOTE with --room, or no ID without --room, is a usage error (exit 2)."""
    assert main(["chat", "me", "you", "--room", "lobby"]) == 2
    assert "give no REMOTE" in capsys.readouterr().err
    assert main(["chat"]) == 2
    assert "--room NAME" in capsys.readouterr().err
