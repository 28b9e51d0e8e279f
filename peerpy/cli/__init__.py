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

Every command takes ``--server``, ``--key``, ``--token``, ``--ice-servers``
and ``--ice-addresses`` (:mod:`peerpy.cli.options`); without them, the
``PEERPY_*`` variables of the same names apply, as for :class:`peerpy.Peer`.
With no broker named, ``send``/``receive``/``chat`` meet on the local network
(:mod:`peerpy.cli.lan`).  Built on
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
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import attrs

from .. import backends as backend
from ..config import resolve_network, resolve_rtc_configuration
from ..exceptions import NegotiationFailedError, NetworkError, PeerError, UsageError
from ..transfer import Code, parse_code, receive_files, send_files
from ..transfer.errors import (
    PeerVanishedError,
    RejectedError,
    StoppedError,
    TransferUsageError,
)
from ..transfer.files import PARTIAL_SUFFIX, Conflict, build_manifest, text_manifest
from ..transfer.protocol import Offer
from .options import build_parser, check_ice_addresses, peer_options, receive_command
from .progress import (
    RichProgress,
    describe,
    format_size,
    is_text,
    parse_size,
    stderr_console,
)
from .prompt import check_code, prompt_code

if TYPE_CHECKING:
    from rich.console import Console

    from ..transfer.options import TransferStats

__all__ = ["build_parser", "main", "qr_text"]


def _peer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run's Peer settings; ``server`` None (no broker named) is filled in by the command."""
    return peer_options(args)


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
    #: What :meth:`say` printed, so that an error already told is not printed again.
    said: list[str] = attrs.Factory(list)

    def say(self, text: str) -> None:
        text = plain(text)
        self.said.append(text)
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
    options = _peer_options(args)
    named = options["server"]  # None: the local network, with a broker of our own

    def on_code(code: Code) -> None:
        print(f"Code: {code}", flush=True)
        command = receive_command(str(code), named, options["key"])
        where = "" if named else " on this network"
        console.print(f"On the other machine{where} run:  {command}")
        if args.qr:
            payload = str(code) if command == f"peerpy receive {code}" else command
            console.print(qr_text(payload), highlight=False, markup=False)

    backend_line = _backend_line(args)
    run.progress = RichProgress(console, verb="Sending")
    async with contextlib.AsyncExitStack() as stack:
        paths, text = args.paths, args.text
        if text == "-":
            text = await anyio.to_thread.run_sync(sys.stdin.read)
        if paths == ["-"]:
            console.print("reading standard input ...")
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="peerpy-stdin-"))
            spooled, size = await anyio.to_thread.run_sync(_spool_stdin, Path(folder))
            paths = [spooled]
            console.print(f"read {format_size(size)} from standard input")
        code = args.code
        if named is None:
            from .lan import sender_broker

            # Usage errors (a missing file, a long text) before anything is announced.
            if text is not None:
                text_manifest(text)
            else:
                await anyio.to_thread.run_sync(build_manifest, paths)

            fixed = parse_code(code) if code is not None else None
            lan = await stack.enter_async_context(sender_broker(fixed, args.words))
            code, options["server"] = lan.code, lan.url
        stats = await send_files(
            paths,
            on_code=on_code,
            code=code,
            words=args.words,
            progress=run.progress,
            on_notice=run.say,
            text=text,
            **options,
        )
    what = "a text" if text is not None else f"{stats.files} file(s)"
    summary = (
        f"sent {what}, {format_size(stats.transferred_bytes)} in "
        f"{stats.seconds:.1f} s ({format_size(stats.rate)}/s), verified by the receiver"
    )
    _print_result(console, summary, backend_line, stats, verbose=args.verbose)
    return 0


def _print_result(
    console: Console, summary: str, backend_line: str, stats: TransferStats, *, verbose: bool
) -> None:
    """End a transfer's output: its summary, the backend, the route, and (``-v``) its numbers."""
    console.print(summary)
    console.print(backend_line)
    if stats.route is not None:
        console.print(f"route: {stats.route}")
    if verbose and stats.connection is not None:
        console.print(f"stats: {stats.connection.summary()}")


def _spool_stdin(folder: Path) -> tuple[str, int]:
    """Copy standard input to a file named ``stdin`` in ``folder`` (a temporary one).

    The transfer protocol offers sizes and hashes up front, as croc does for
    stdin; the copy also lets a reconnection resume within this run.
    """
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
    parsed = check_code(code)  # before anything reaches the sender: one try per code
    conflict: Conflict = "overwrite" if args.overwrite else "rename" if args.rename else "refuse"
    texts_only = True

    async def confirm(offer: Offer, already: int) -> bool:
        nonlocal texts_only
        texts_only = is_text(offer)
        if args.yes or texts_only:  # a text is only printed: nothing to agree to
            if not texts_only:
                console.print(f"receiving {describe(offer)}")
            return True
        return await _ask(offer, already)

    backend_line = _backend_line(args)
    options = _peer_options(args)
    peer_id = None
    if options["server"] is None:  # no broker named: find the sender's on the local network
        from .lan import find_broker, receiver_id

        options["server"] = await find_broker(parsed, args.wait)
        peer_id = receiver_id(parsed)
    run.progress = RichProgress(console, verb="Receiving")
    stats = await receive_files(
        parsed,
        output=args.output,
        conflict=conflict,
        confirm=confirm,
        progress=run.progress,
        on_notice=run.say,
        stdout=sys.stdout.buffer if args.stdout else None,
        peer_id=peer_id,
        **options,
    )
    for text in stats.texts:
        print(text, flush=True)
    for path in stats.paths:
        if str(path) != "-":
            print(path)
    if texts_only and stats.texts:  # like wormhole's --only-text: the text and nothing else
        return 0
    summary = (
        f"received {stats.files} file(s), {format_size(stats.transferred_bytes)} in "
        f"{stats.seconds:.1f} s ({format_size(stats.rate)}/s)"
        + (f", {format_size(stats.resumed_bytes)} resumed" if stats.resumed_bytes else "")
        + ", SHA-256 verified"
    )
    _print_result(console, summary, backend_line, stats, verbose=args.verbose)
    return 0


async def _chat(args: argparse.Namespace, run: _Run) -> int:
    from .chat import run_chat, run_room_chat, stdin_lines

    def write(text: str) -> None:
        print(text, flush=True)

    if args.room is not None and args.remote is not None:
        raise UsageError("--room chats with everyone in the room: give no REMOTE")
    if args.room is None and args.id is None:
        raise UsageError("give your ID (and a REMOTE to call), or --room NAME for a group chat")
    options = _peer_options(args)
    async with contextlib.AsyncExitStack() as stack:
        read_line = await stack.enter_async_context(stdin_lines())
        if args.room is not None:  # rooms live on a broker: PEERPY_SERVER's, else the default
            settings = {name: value for name, value in options.items() if value is not None}
            await run_room_chat(
                args.id, args.room, name=args.name, read_line=read_line, write=write, **settings
            )
            return 0
        if options["server"] is None:  # no broker named: meet on the local network
            from .lan import chat_broker, find_chat

            if args.remote is None:
                options["server"] = await stack.enter_async_context(chat_broker(args.id))
            else:
                options["server"] = await find_chat(args.remote, args.wait)
        settings = {name: value for name, value in options.items() if value is not None}
        await run_chat(args.id, args.remote, read_line=read_line, write=write, **settings)
    return 0


async def _demo(args: argparse.Namespace, run: _Run) -> int:
    from .demo import run_demo

    options = _peer_options(args)
    if options["ice_addresses"] is None and not os.environ.get("PEERPY_ICE_ADDRESSES"):
        options["ice_addresses"] = ["127.0.0.1"]  # by itself the demo stays on loopback
    # Without --server or PEERPY_SERVER the demo embeds its own broker on 127.0.0.1.
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
        check_ice_addresses(args.ice_addresses)
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
        text, hint = describe_error(error), ""
        if isinstance(error, StoppedError | PeerVanishedError) and run.where():
            hint = f" ({run.where().strip()}); {run.resume_hint()}"
        if text in run.said:  # told as it happened: only what to do now
            if hint:
                print(f"peerpy {args.command}: {hint.lstrip()}", file=sys.stderr)
            return 1
        print(f"peerpy {args.command}: error: {text}{hint}", file=sys.stderr)
        return 1


_NEGOTIATION = re.compile(
    r"^(?:connection to \S+ not open after (?P<limit>[\d.]+ s)"
    r"|Negotiation of connection to \S+ failed)"
)


_UNREACHABLE = "cannot reach the broker at "


def describe_error(error: PeerError) -> str:
    """The error's text for a person: ICE failures name no internal peer id; an
    unreachable broker comes with what to do."""
    text = str(error)
    if isinstance(error, NegotiationFailedError):
        text = plain(text)
    if isinstance(error, NetworkError) and text.startswith(_UNREACHABLE):
        text += (
            "; start a broker there (`peerpy-server`), or name one with --server URL "
            "(--server peerjs: the PeerJS project's public broker), or drop --server and "
            "PEERPY_SERVER to meet on the local network"
        )
    return text


def plain(text: str) -> str:
    """``text`` with a failed negotiation worded for a person (no internal peer id)."""

    def worded(match: re.Match[str]) -> str:
        limit = match["limit"]
        return "could not connect to the other side" + (f" within {limit}" if limit else "")

    return _NEGOTIATION.sub(worded, text)


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
