"""The ``peerpy`` command line: send, receive, chat, demo.

::

    peerpy send PATH...          print a code, send files/folders to whoever types it
    peerpy send --text TEXT      send a message instead (the receiver prints it)
    peerpy send -                send standard input (spooled to a temporary file first)
    peerpy receive [CODE]        receive them (asks first unless --yes; prompts for the code)
    peerpy receive CODE --stdout write the one file to standard output
    peerpy chat ID [REMOTE]      line-based chat
    peerpy chat [ID] --room NAME group chat in a room (--name: what the others see)
    peerpy demo [--size 64MiB]   embedded broker + two peers on 127.0.0.1: a rate

Every command takes ``--server``, ``--ice-servers`` and ``--ice-addresses``;
without them, ``PEERPY_SERVER``, ``PEERPY_ICE_SERVERS`` and
``PEERPY_ICE_ADDRESSES`` apply, as for :class:`peerpy.Peer`.  Built on
argparse (standard library: no dependency for a secondary interface, and
``main(argv)`` returns exit codes instead of exiting).  Exit status: 0 done,
1 the transfer or connection failed, 2 bad usage, 130 interrupted (SIGINT),
143 terminated (SIGTERM).

SIGINT (Ctrl-C) and SIGTERM stop a transfer cleanly: the other side is told
at once, partial files stay, and both sides print how to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs

from .. import __version__
from .. import backends as backend
from ..config import resolve_network, resolve_rtc_configuration
from ..exceptions import NegotiationFailedError, PeerError, UsageError
from ..transfer import Code, receive_files, send_files
from ..transfer.errors import (
    PeerVanishedError,
    RejectedError,
    StoppedError,
    TransferUsageError,
)
from ..transfer.files import PARTIAL_SUFFIX, Conflict
from ..transfer.protocol import Offer
from .progress import RichProgress, describe, format_size, parse_size, stderr_console
from .prompt import prompt_code

__all__ = ["build_parser", "main"]

DEFAULT_DEMO_SIZE = "64MiB"


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``peerpy`` (exposed for docs and tests)."""
    common = argparse.ArgumentParser(add_help=False)
    net = common.add_argument_group("network (flags win over the environment)")
    net.add_argument("--server", help="broker URL (else PEERPY_SERVER)")
    net.add_argument(
        "--ice-servers",
        type=_list,
        metavar="URLS",
        help="comma-separated stun:/turn: URLs, '' for none (else PEERPY_ICE_SERVERS)",
    )
    net.add_argument(
        "--ice-addresses",
        type=_list,
        metavar="ADDRS",
        help="comma-separated local addresses ICE may use (else PEERPY_ICE_ADDRESSES)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")

    parser = argparse.ArgumentParser(
        prog="peerpy", description="Peer-to-peer files and chat over WebRTC, PeerJS-compatible."
    )
    parser.add_argument("--version", action="version", version=f"peerpy {__version__}")
    # -v before the command counts too (`peerpy -v send x` as `peerpy send x -v`).
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, dest="verbose_before", help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = sub.add_parser("send", parents=[common], help="send files and folders with a code")
    send.add_argument("paths", nargs="*", metavar="PATH", help="files, folders, or - for stdin")
    send.add_argument("--text", help="send this message instead of files")
    send.add_argument("--qr", action="store_true", help="also print the code as a QR code")
    send.add_argument("--code", help="use this code (number-words) instead of a random one")
    send.add_argument("--words", type=int, default=2, help="words in a random code (default 2)")

    receive = sub.add_parser("receive", parents=[common], help="receive with a code")
    receive.add_argument("code", nargs="?", metavar="CODE", help="asked for when left out")
    receive.add_argument(
        "--stdout", action="store_true", help="write the one file to stdout (progress on stderr)"
    )
    receive.add_argument("-o", "--output", default=".", metavar="DIR", help="where to put files")
    receive.add_argument("-y", "--yes", action="store_true", help="accept without asking")
    clash = receive.add_mutually_exclusive_group()
    clash.add_argument("--overwrite", action="store_true", help="replace existing files")
    clash.add_argument("--rename", action="store_true", help="save as 'name (1).ext' instead")

    chat = sub.add_parser("chat", parents=[common], help="line-based chat")
    chat.add_argument("id", nargs="?", metavar="ID", help="your peer id (--room: optional)")
    chat.add_argument("remote", nargs="?", metavar="REMOTE", help="peer to connect to")
    chat.add_argument("--room", metavar="NAME", help="group chat with everyone in room NAME")
    chat.add_argument("--name", help="the name the room shows for you (default: your id)")

    demo = sub.add_parser("demo", parents=[common], help="local transfer demo with a rate")
    demo.add_argument("--size", default=DEFAULT_DEMO_SIZE, help="bytes to send (default 64MiB)")
    return parser


def _peer_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "server": args.server,
        "ice_servers": args.ice_servers,
        "ice_addresses": args.ice_addresses,
    }


def _backend_line(args: argparse.Namespace) -> str:
    """Which WebRTC backend and event loop this run uses, and why not wrtc if not; logged.

    The command line uses the fastest backend installed that honours the run's
    network settings (``auto``) unless ``PEERPY_BACKEND`` names one.
    """
    name, why_not_wrtc = backend.explain_backend(
        backend.resolve_backend(),
        resolve_rtc_configuration(args.ice_servers),
        resolve_network(args.ice_addresses),
    )
    loop = "uvloop" if backend.use_uvloop() else "asyncio"
    line = f"backend: {name} on {loop}"
    if why_not_wrtc is not None:
        line += f" ({why_not_wrtc})"
    logging.getLogger("peerpy.cli").debug("%s", line)
    return line


@attrs.define
class _Run:
    """What one command run knows when it has to say how to resume."""

    args: argparse.Namespace
    progress: RichProgress | None = None

    def say(self, text: str) -> None:
        print(f"peerpy {self.args.command}: {text}", file=sys.stderr, flush=True)

    def resume_hint(self) -> str:
        """How to pick up an interrupted transfer from this side."""
        args = self.args
        if args.command == "send" and (args.text is not None or args.paths == ["-"]):
            return (
                "standard input and --text cannot resume: run `peerpy send` again with the "
                "same input (a receiver's partial copy is kept only if the same bytes come again)"
            )
        if args.command == "receive" and args.stdout:
            return "what went to standard output cannot resume: receive again from the start"
        if args.command == "send":
            paths = " ".join(shlex.quote(p) for p in args.paths)
            return (
                f"to resume, run `peerpy send {paths}` again and receive with the new code "
                "into the same folder: what arrived is not sent again"
            )
        output = shlex.quote(args.output)
        return (
            f"the partial files (*{PARTIAL_SUFFIX}) stay in {output}; to resume, receive "
            f"again into it (`peerpy receive CODE -o {output}` with a code from a new "
            "`peerpy send`): what arrived is not received again"
        )

    def where(self) -> str:
        position = self.progress.position() if self.progress is not None else ""
        return f" at {position}" if position else ""


async def _send(args: argparse.Namespace, run: _Run) -> int:
    console = stderr_console()
    if args.text is not None and args.paths:
        raise TransferUsageError("give paths or --text, not both")
    if args.text is None and not args.paths:
        raise TransferUsageError("nothing to send: give paths, - for stdin, or --text")
    if "-" in args.paths and len(args.paths) > 1:
        raise TransferUsageError("- (standard input) must be the only thing sent")

    def on_code(code: Code) -> None:
        print(f"Code: {code}", flush=True)
        console.print(f"On the other machine run:  peerpy receive {code}")
        if args.qr:
            console.print(qr_text(str(code)), highlight=False, markup=False)

    backend_line = _backend_line(args)
    run.progress = RichProgress(console, verb="Sending")
    with contextlib.ExitStack() as stack:
        paths = args.paths
        if paths == ["-"]:
            console.print("reading standard input ...")
            spooled, size = await anyio.to_thread.run_sync(_spool_stdin, stack)
            paths = [spooled]
            console.print(f"read {format_size(size)} from standard input")
        stats = await send_files(
            paths,
            on_code=on_code,
            code=args.code,
            words=args.words,
            progress=run.progress,
            on_notice=run.say,
            text=args.text,
            **_peer_options(args),
        )
    what = "a text" if args.text is not None else f"{stats.files} file(s)"
    console.print(
        f"sent {what}, {format_size(stats.transferred_bytes)} in "
        f"{stats.seconds:.1f} s ({format_size(stats.rate)}/s), verified by the receiver"
    )
    console.print(backend_line)
    if stats.route is not None:
        console.print(f"route: {stats.route}")
    if args.verbose and stats.connection is not None:
        console.print(f"stats: {stats.connection.summary()}")
    return 0


def _spool_stdin(stack: contextlib.ExitStack) -> tuple[str, int]:
    """Copy standard input to a temporary file named ``stdin`` (removed on exit).

    The transfer protocol offers sizes and hashes up front, as croc does for
    stdin; the copy also lets a reconnection resume within this run.
    """
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peerpy-stdin-")))
    path = folder / "stdin"
    with path.open("wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1024 * 1024)
    return str(path), path.stat().st_size


def qr_text(code: str) -> str:
    """``code`` as a QR code drawn with block characters (for a terminal)."""
    import segno

    buffer = io.StringIO()
    segno.make(code, error="m").terminal(out=buffer, compact=True)
    return buffer.getvalue()


async def _ask(offer: Offer, already: int) -> bool:
    prompt = f"Receive {describe(offer)}? [y/N] "
    interactive = sys.stdin.isatty()
    line = await anyio.to_thread.run_sync(_read_answer, prompt, abandon_on_cancel=True)
    if not line and not interactive:
        raise RejectedError(
            "standard input is not a terminal and gave no answer, so nothing was accepted: "
            "pass --yes to accept without asking"
        ).telling_peer("it could not ask: no terminal, and no --yes")
    return line.strip().lower() in ("y", "yes")


def _read_answer(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return sys.stdin.readline()


async def _receive(args: argparse.Namespace, run: _Run) -> int:
    console = stderr_console()
    code = args.code
    if code is None:
        code = await anyio.to_thread.run_sync(prompt_code, abandon_on_cancel=True)
    conflict: Conflict = "overwrite" if args.overwrite else "rename" if args.rename else "refuse"

    async def confirm(offer: Offer, already: int) -> bool:
        if args.yes:
            console.print(f"receiving {describe(offer)}")
            return True
        return await _ask(offer, already)

    backend_line = _backend_line(args)
    run.progress = RichProgress(console, verb="Receiving")
    stats = await receive_files(
        code,
        output=args.output,
        conflict=conflict,
        confirm=confirm,
        progress=run.progress,
        on_notice=run.say,
        stdout=sys.stdout.buffer if args.stdout else None,
        **_peer_options(args),
    )
    for text in stats.texts:
        print(text, flush=True)
    for path in stats.paths:
        if str(path) != "-":
            print(path)
    what = "a text" if stats.texts and not stats.paths else f"{stats.files} file(s)"
    console.print(
        f"received {what}, {format_size(stats.transferred_bytes)} in "
        f"{stats.seconds:.1f} s ({format_size(stats.rate)}/s)"
        + (f", {format_size(stats.resumed_bytes)} resumed" if stats.resumed_bytes else "")
        + ", SHA-256 verified"
    )
    console.print(backend_line)
    if stats.route is not None:
        console.print(f"route: {stats.route}")
    if args.verbose and stats.connection is not None:
        console.print(f"stats: {stats.connection.summary()}")
    return 0


async def _chat(args: argparse.Namespace, run: _Run) -> int:
    from .chat import run_chat, run_room_chat

    async def read_line() -> str | None:
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        return line or None

    def write(text: str) -> None:
        print(text, flush=True)

    if args.room is not None and args.remote is not None:
        raise UsageError("--room chats with everyone in the room: give no REMOTE")
    if args.room is not None:
        options = _peer_options(args)
        await run_room_chat(
            args.id, args.room, name=args.name, read_line=read_line, write=write, **options
        )
        return 0
    if args.id is None:
        raise UsageError("give your ID (and a REMOTE to call), or --room NAME for a group chat")
    await run_chat(args.id, args.remote, read_line=read_line, write=write, **_peer_options(args))
    return 0


async def _demo(args: argparse.Namespace, run: _Run) -> int:
    from .demo import run_demo

    options = _peer_options(args)
    if options["ice_addresses"] is None and not os.environ.get("PEERPY_ICE_ADDRESSES"):
        options["ice_addresses"] = ["127.0.0.1"]  # by itself the demo stays on loopback
    # Without --server or PEERPY_SERVER the demo embeds its own broker.
    options["server"] = options["server"] or os.environ.get("PEERPY_SERVER") or None
    console = stderr_console()
    console.print(_backend_line(argparse.Namespace(**{**vars(args), **options})))
    await run_demo(parse_size(args.size), console=console, **options)
    return 0


Command = Callable[[argparse.Namespace, _Run], Awaitable[int]]
_COMMANDS: dict[str, Command] = {
    "send": _send,
    "receive": _receive,
    "chat": _chat,
    "demo": _demo,
}


async def _run(command: Command, run: _Run) -> int:
    """Run ``command``; SIGINT/SIGTERM cancel it (it tells the other side) and say how to resume."""
    caught: list[int] = []
    result: list[int] = []
    async with anyio.create_task_group() as tg:
        if threading.current_thread() is threading.main_thread():
            await tg.start(_watch_signals, tg.cancel_scope, caught)
        result.append(await command(run.args, run))
        tg.cancel_scope.cancel()
    if not caught:
        return result[0]
    name = signal.Signals(caught[0]).name
    if run.args.command in ("send", "receive") and run.where():
        run.say(f"interrupted ({name}){run.where()}; {run.resume_hint()}")
    else:
        run.say(f"interrupted ({name})")
    return 128 + caught[0]


async def _watch_signals(
    scope: anyio.CancelScope,
    caught: list[int],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """On SIGINT or SIGTERM, cancel ``scope`` (once; a second signal acts as usual)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            caught.append(signum)
            scope.cancel()
            return


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``peerpy`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    args.verbose += args.verbose_before
    if args.verbose:
        level = logging.DEBUG if args.verbose > 1 else logging.INFO
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    run = _Run(args)
    try:
        return backend.run(_run, _COMMANDS[args.command], run)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        error = _peer_error(exc)
        if error is None:
            raise
        if isinstance(error, UsageError):
            print(f"peerpy {args.command}: {error}", file=sys.stderr)
            return 2
        hint = ""
        if isinstance(error, StoppedError | PeerVanishedError) and run.where():
            hint = f" ({run.where().strip()}); {run.resume_hint()}"
        print(f"peerpy {args.command}: error: {describe_error(error)}{hint}", file=sys.stderr)
        return 1


_NEGOTIATION = re.compile(
    r"^(?:connection to \S+ not open after (?P<limit>[\d.]+ s)"
    r"|Negotiation of connection to \S+ failed)"
)


def describe_error(error: PeerError) -> str:
    """The error's text for a person: ICE failures name no internal peer id."""
    text = str(error)
    if isinstance(error, NegotiationFailedError):

        def plain(match: re.Match[str]) -> str:
            limit = match["limit"]
            return "could not connect to the other side" + (f" within {limit}" if limit else "")

        text = _NEGOTIATION.sub(plain, text)
    return text


def _peer_error(exc: BaseException) -> PeerError | None:
    """The PeerError in ``exc``, looking inside exception groups of task groups."""
    if isinstance(exc, PeerError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _peer_error(inner)
        if found is not None:
            return found
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
