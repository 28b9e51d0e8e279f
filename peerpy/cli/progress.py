"""Terminal output of the command line: progress bars (rich), sizes, prompts."""

from __future__ import annotations

import re
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..transfer.errors import TransferUsageError
from ..transfer.protocol import EntryKind, FileEntry, Offer

__all__ = ["RichProgress", "describe", "format_size", "is_text", "parse_size", "stderr_console"]

_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?b?\s*$", re.IGNORECASE)


def stderr_console() -> Console:
    """The console progress and messages go to (stdout stays for codes and results).

    Off a terminal nothing is wrapped: a log file or a pipe gets whole lines.
    No markup: messages print as written (``pip install 'peerpy-sdk[wrtc]'``).
    """
    terminal = sys.stderr.isatty()
    return Console(file=sys.stderr, highlight=False, markup=False, soft_wrap=not terminal)


def parse_size(text: str) -> int:
    """``64MiB``, ``64M``, ``1G``, ``4096`` -> bytes; raise TransferUsageError."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise TransferUsageError(f"not a size: {text!r} (try 64MiB, 1G, 4096)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").lower()])


def format_size(nbytes: float) -> str:
    """Bytes for people: ``64.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(nbytes) < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def is_text(offer: Offer) -> bool:
    """Whether ``offer`` is a message (``peerpy send --text``), not files."""
    files = offer.files
    return len(files) == 1 and files[0][1].kind is EntryKind.TEXT


def describe(offer: Offer) -> str:
    """One line about an offer: ``3 files (12.5 MiB): a.txt, photos/...``."""
    files = offer.files
    if is_text(offer):
        return f"a text ({format_size(offer.total_bytes)})"
    top = sorted({e.path.split("/")[0] for e in offer.entries})
    names = ", ".join(top[:4]) + (", ..." if len(top) > 4 else "")
    count = f"{len(files)} file" + ("" if len(files) == 1 else "s")
    return f"{count} ({format_size(offer.total_bytes)}): {names}"


class RichProgress:
    """A :class:`peerpy.transfer.options.Progress` that draws one bar with rate and ETA."""

    def __init__(self, console: Console | None = None, *, verb: str = "Sending") -> None:
        self._console = console or stderr_console()
        self._verb = verb
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        #: Bytes of the offer (None before the transfer starts) and bytes done.
        self.total: int | None = None
        self.done = 0

    def position(self) -> str:
        """``12.0 MiB of 40.0 MiB``, or ``""`` before the transfer started."""
        if self.total is None:
            return ""
        return f"{format_size(max(self.done, 0))} of {format_size(self.total)}"

    def begin(self, offer: Offer, already: int) -> None:
        """Start the bar at ``already`` of the offer's bytes (none for a text: no noise)."""
        self.total, self.done = offer.total_bytes, already
        if is_text(offer):
            return
        self._bar = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(self._verb, total=offer.total_bytes, completed=already)
        if already:
            self._console.print(f"resuming at {self.position()}")

    def file(self, entry: FileEntry, offset: int) -> None:
        """Show the current file's name."""
        if self._bar is not None and self._task is not None:
            name = entry.path if len(entry.path) <= 40 else "..." + entry.path[-37:]
            self._bar.update(self._task, description=f"{self._verb} {name}")

    def advance(self, nbytes: int) -> None:
        """Move the bar."""
        self.done += nbytes
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, nbytes)

    def end(self) -> None:
        """Stop drawing."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
