"""The command lines as real processes (``python -m peerpy.cli``, ``peerpy_server.cli``).

:class:`Command` starts one with its output in files (read at any time, no pipe
to drain), and :func:`commands` is a fixture body that stops every process a test
started, by PID.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class Command:
    """One command-line process; ``stdin`` is a file, ``"pipe"`` or nothing."""

    def __init__(
        self, folder: Path, tag: str, argv: list[str], *, stdin: Path | str | None = None,
        module: str = "peerpy.cli", env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.tag = tag
        self.out_path, self.err_path = folder / f"{tag}.out", folder / f"{tag}.err"
        source: int | IO[bytes] = subprocess.DEVNULL
        if stdin == "pipe":
            source = subprocess.PIPE
        elif isinstance(stdin, Path):
            source = stdin.open("rb")
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *argv], stdin=source, stdout=out, stderr=err,
                env=env,
            )  # fmt: skip
        if not isinstance(source, int):
            source.close()

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        """The exit status; fail the test (with stderr) if it still runs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (status := self.process.poll()) is None:
            late = time.monotonic() > deadline
            assert not late, f"{self.tag} still runs after {timeout} s; stderr:\n{self.err()}"
            time.sleep(0.02)
        return status

    def wait_for(self, text: str, *, stream: str = "err", timeout: float = 30) -> None:
        """Until ``text`` appears on stderr (or ``stream="out"``); fail if the process ends."""
        read = self.err if stream == "err" else self.out
        deadline = time.monotonic() + timeout
        while text not in read():
            status = self.process.poll()
            assert status is None, f"{self.tag} exited ({status}) without {text!r}:\n{self.err()}"
            assert time.monotonic() < deadline, f"no {text!r} from {self.tag}:\n{self.err()}"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        if self.process.stdin is not None:
            self.process.stdin.close()


def commands() -> Iterator[list[Command]]:
    """Fixture body: the list a test appends its processes to; each is stopped after it."""
    started: list[Command] = []
    yield started
    for command in started:
        command.stop()
