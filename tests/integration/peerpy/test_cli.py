"""The peerpy command line (peerpy.cli): parsing, send/receive through main(), chat, demo.

And the command line as a new user meets it (issue 13): flags, wording, text,
pipes, prompt, QR.  Those transfers run ``python -m peerpy.cli`` children that
meet on our broker on 127.0.0.1; the children are stopped by PID.
"""

from __future__ import annotations

import hashlib
import io
import os
import pty
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from peerpy_protocol.ids import random_token

from peerpy.cli import build_parser, main, qr_text
from peerpy.cli.chat import run_chat
from peerpy.cli.progress import format_size, parse_size
from peerpy.cli.prompt import complete_code
from peerpy.transfer.errors import TransferUsageError

from ...helpers.brokers import free_port, peerpy_server, threaded_peerpy_server, wait_registered


@pytest.fixture
def broker() -> Iterator[str]:
    """Our broker (discovery on) on its own event loop thread."""
    with threaded_peerpy_server() as url:
        yield url


def test_sizes() -> None:
    """Sizes parse with SI and binary units and print in binary units."""
    assert parse_size("64MiB") == 64 * 1024 * 1024
    assert parse_size("1G") == 10**9
    assert parse_size("4096") == 4096
    assert parse_size("1.5 KiB") == 1536
    assert format_size(64 * 1024 * 1024) == "64.0 MiB"
    assert format_size(10) == "10 B"
    with pytest.raises(TransferUsageError):
        parse_size("lots")


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0; a missing command or bad code is a usage error (2) with a message."""
    assert main(["--help"]) == 0
    assert "send" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["receive", "not a code!"]) == 2
    assert "not a transfer code" in capsys.readouterr().err
    assert main(["send", "/no/such/file"]) == 2
    assert "cannot send" in capsys.readouterr().err


def test_every_command_has_network_flags() -> None:
    """send, receive, chat and demo all take --server, --ice-servers, --ice-addresses."""
    parser = build_parser()
    for argv in (["send", "x"], ["receive", "1-a"], ["chat", "me"], ["demo"]):
        args = parser.parse_args(
            [*argv, "--server", "http://h:1/", "--ice-servers", "", "--ice-addresses", "127.0.0.1"]
        )
        assert args.server == "http://h:1/"
        assert args.ice_servers == []
        assert args.ice_addresses == ["127.0.0.1"]


def test_unreachable_broker_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no broker listening, receive fails fast with exit 1 and says why."""
    monkeypatch.setenv("PEERPY_SERVER", f"http://127.0.0.1:{free_port()}/")
    assert main(["receive", "5-purple-sausage"]) == 1
    assert "error" in capsys.readouterr().err


def test_send_receive_through_main(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """peerpy send / peerpy receive --yes move a folder; flags win over a bad PEERPY_SERVER."""
    monkeypatch.setenv("PEERPY_SERVER", f"http://127.0.0.1:{free_port()}/")  # flags must win
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    (folder / "b.bin").write_bytes(os.urandom(70_000))
    out = tmp_path / "out"
    nameplate = int.from_bytes(os.urandom(3), "big") + 1000
    code = f"{nameplate}-cli-test"
    results: dict[str, int] = {}
    argv = ["send", str(folder), "--code", code, "--server", broker]
    sender = threading.Thread(target=lambda: results.__setitem__("send", main(argv)))
    sender.start()
    try:
        wait_registered(broker, f"peerpy-xfer-{nameplate}")
        results["receive"] = main(["receive", code, "--yes", "-o", str(out), "--server", broker])
    finally:
        sender.join(timeout=30)
    assert results == {"send": 0, "receive": 0}
    captured = capsys.readouterr()
    assert f"Code: {code}" in captured.out
    assert str(out / "docs" / "a.txt") in captured.out
    assert "SHA-256 verified" in captured.err
    for name in ("a.txt", "b.bin"):
        original = hashlib.sha256((folder / name).read_bytes()).digest()
        assert hashlib.sha256((out / "docs" / name).read_bytes()).digest() == original


def test_receive_declined_at_prompt(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Answering 'n' at the prompt declines: nothing written, the sender hears why."""
    source = tmp_path / "f.txt"
    source.write_text("x")
    nameplate = int.from_bytes(os.urandom(3), "big") + 1000
    code = f"{nameplate}-no-thanks"
    results: dict[str, int] = {}
    argv = ["send", str(source), "--code", code, "--server", broker]
    sender = threading.Thread(target=lambda: results.__setitem__("send", main(argv)))
    sender.start()
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    try:
        wait_registered(broker, f"peerpy-xfer-{nameplate}")
        results["receive"] = main(
            ["receive", code, "-o", str(tmp_path / "out"), "--server", broker]
        )
    finally:
        sender.join(timeout=30)
    assert results == {"send": 1, "receive": 1}
    err = capsys.readouterr().err
    assert "Receive 1 file" in err
    assert "declined" in err
    assert not (tmp_path / "out" / "f.txt").exists()


@pytest.mark.anyio
async def test_chat_lines_both_ways() -> None:
    """Two chat sessions exchange typed lines; input end closes the chat on both sides."""
    async with peerpy_server() as url:
        tok = random_token()
        said: dict[str, list[str]] = {"a": [], "b": []}
        b_sent = anyio.Event()

        async def lines_a() -> str | None:
            await b_sent.wait()
            while f"b{tok}: second" not in said["a"]:  # noqa: ASYNC110 - a list, no event
                await anyio.sleep(0.02)
            return None  # a ends after hearing b

        b_lines = iter(["hi from b\n", "second\n"])

        async def lines_b() -> str | None:
            line = next(b_lines, None)
            if line is None:
                b_sent.set()
                await anyio.sleep(30)  # b keeps reading until a leaves
            return line

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: run_chat(
                    "a" + tok, None, read_line=lines_a, write=said["a"].append, server=url
                )
            )
            await anyio.sleep(0.5)
            with anyio.fail_after(30):
                await run_chat(
                    "b" + tok, "a" + tok, read_line=lines_b, write=said["b"].append, server=url
                )
    assert f"b{tok}: hi from b" in said["a"]
    assert f"b{tok}: second" in said["a"]
    assert f"* a{tok} left" in said["b"]


def test_demo_end_to_end(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """peerpy demo runs broker and peers by itself on loopback and reports a verified rate."""
    monkeypatch.delenv("PEERPY_ICE_ADDRESSES")
    assert main(["demo", "--size", "300KiB"]) == 0
    err = capsys.readouterr().err
    assert "broker: http://127.0.0.1:" in err
    assert "SHA-256 verified" in err
    assert "MB/s" in err


def test_ice_failures_name_no_internal_peer_id() -> None:
    from peerpy.cli import describe_error
    from peerpy.exceptions import NegotiationFailedError, NetworkError

    timed_out = NegotiationFailedError(
        "connection to peerpy-7f3a9c not open after 30 s. ICE candidates here: 1 host; "
        "from the other side: 1 host; ICE servers: none. No STUN or TURN server is configured"
    )
    assert describe_error(timed_out) == (
        "could not connect to the other side within 30 s. ICE candidates here: 1 host; "
        "from the other side: 1 host; ICE servers: none. No STUN or TURN server is configured"
    )
    failed = NegotiationFailedError("Negotiation of connection to peerpy-7f3a9c failed. ICE x.")
    assert describe_error(failed) == "could not connect to the other side. ICE x."
    other = NetworkError("connection to peerpy-7f3a9c not open after 30 s")
    assert describe_error(other) == str(other)  # only ICE failures are rephrased


# -- the first hour (issue 13) ------------------------------------------------------

MiB = 1024 * 1024


def nameplate() -> int:
    return int.from_bytes(os.urandom(3), "big") + 1000


class Cli:
    """A ``python -m peerpy.cli`` child; stdout and stderr go to files."""

    def __init__(
        self, tmp: Path, tag: str, argv: list[str], stdin: int | Path = subprocess.DEVNULL
    ) -> None:
        self.out_path = tmp / f"{tag}.out"
        self.err_path = tmp / f"{tag}.err"
        self.tag = tag
        source = stdin.open("rb") if isinstance(stdin, Path) else stdin
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "peerpy.cli", *argv],
                stdin=source,
                stdout=out,
                stderr=err,
            )
        if isinstance(stdin, Path):
            source.close()  # type: ignore[union-attr]

    def out(self) -> bytes:
        return self.out_path.read_bytes()

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.tag} still runs; stderr:\n{self.err()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def clis() -> Iterator[list[Cli]]:
    started: list[Cli] = []
    yield started
    for cli in started:
        cli.stop()


def start(clis: list[Cli], cli: Cli) -> Cli:
    clis.append(cli)
    return cli


def sender(
    clis: list[Cli], tmp: Path, url: str, code: str, what: list[str], **kw: int | Path
) -> Cli:
    cli = start(clis, Cli(tmp, "send", ["send", *what, "--code", code, "--server", url], **kw))
    wait_registered(url, f"peerpy-xfer-{code.split('-')[0]}")
    return cli


# -- flags ----------------------------------------------------------------------


def test_version_flags() -> None:
    """``peerpy --version`` and ``peerpy-server --version`` print their versions."""
    import peerpy_server

    import peerpy

    cli = subprocess.run(
        [sys.executable, "-m", "peerpy.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (cli.returncode, cli.stdout.strip()) == (0, f"peerpy {peerpy.__version__}")
    server = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from peerpy_server.cli import main; sys.exit(main())",
            "--version",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (server.returncode, server.stdout.strip()) == (
        0,
        f"peerpy-server {peerpy_server.__version__}",
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_command(where: str) -> None:
    """``peerpy -vv receive`` logs at debug level as ``peerpy receive -vv`` does."""
    url = f"http://127.0.0.1:{free_port()}/"
    argv = ["receive", "5-apple-acorn", "--server", url]
    argv = ["-vv", *argv] if where == "before" else [*argv, "-vv"]
    run = subprocess.run(
        [sys.executable, "-m", "peerpy.cli", *argv], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert "DEBUG " in run.stderr, run.stderr


# -- wording --------------------------------------------------------------------


def test_broker_unreachable_reads_the_same_for_send_and_receive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The HTTP (receive asks for an id) and WebSocket (send) paths say the same thing."""
    url = f"http://127.0.0.1:{free_port()}/"
    (tmp_path / "f").write_text("x")
    assert main(["send", str(tmp_path / "f"), "--server", url]) == 1
    send_err = capsys.readouterr().err.strip()
    assert main(["receive", "5-apple-acorn", "--server", url]) == 1
    receive_err = capsys.readouterr().err.strip()
    expected = (
        f"error: cannot reach the broker at {url}: Connection refused; start a broker there "
        "(`peerpy-server`), or name one with --server URL (--server peerjs: the PeerJS "
        "project's public broker), or drop --server and PEERPY_SERVER to meet on the local "
        "network"
    )
    assert send_err == f"peerpy send: {expected}"
    assert receive_err == f"peerpy receive: {expected}"


def test_decline_is_worded_once(broker: str, tmp_path: Path, clis: list[Cli]) -> None:
    """Answering n: the sender reads "the receiver declined the offer", once."""
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "no").write_text("n\n")
    code = f"{nameplate()}-apple-acorn"
    send = sender(clis, tmp_path, broker, code, [str(tmp_path / "f.txt")])
    out = tmp_path / "out"
    argv = ["receive", code, "-o", str(out), "--server", broker]
    receive = start(clis, Cli(tmp_path, "receive", argv, stdin=tmp_path / "no"))
    assert receive.wait() == 1
    assert send.wait() == 1
    assert send.err().strip().endswith("peerpy send: error: the receiver declined the offer")
    assert "you declined the offer" in receive.err()
    assert not out.exists() or not any(out.iterdir())


def test_receive_without_terminal_or_yes_says_so(
    broker: str, tmp_path: Path, clis: list[Cli]
) -> None:
    """stdin at EOF and not a terminal, no --yes: both sides say why, nothing is written."""
    (tmp_path / "f.txt").write_text("x")
    code = f"{nameplate()}-apple-acorn"
    send = sender(clis, tmp_path, broker, code, [str(tmp_path / "f.txt")])
    out = tmp_path / "out"
    receive = start(
        clis, Cli(tmp_path, "receive", ["receive", code, "-o", str(out), "--server", broker])
    )
    assert receive.wait() == 1
    assert send.wait() == 1
    assert "standard input is not a terminal" in receive.err()
    assert "pass --yes" in receive.err()
    assert "you declined" not in receive.err()
    assert "the receiver declined the offer (it could not ask: no terminal" in send.err()


def test_wrong_code_is_worded_for_each_side(broker: str, tmp_path: Path, clis: list[Cli]) -> None:
    """The receiver hears it typed a wrong code; the sender that the receiver does not know it."""
    (tmp_path / "f.txt").write_text("x")
    number = nameplate()
    send = sender(clis, tmp_path, broker, f"{number}-apple-acorn", [str(tmp_path / "f.txt")])
    argv = ["receive", f"{number}-apple-banana", "--yes", "-o", str(tmp_path / "o")]
    receive = start(clis, Cli(tmp_path, "receive", [*argv, "--server", broker]))
    assert receive.wait() == 1
    assert send.wait() == 1
    assert "wrong code: it does not match the sender's" in receive.err()
    assert "the receiver does not know the code" in send.err()
    for err in (receive.err(), send.err()):
        assert "the other side does not know" not in err


def test_sender_is_not_told_to_use_receiver_flags(
    broker: str, tmp_path: Path, clis: list[Cli]
) -> None:
    """A file in the way: the receiver is told its flags, the sender that they are its flags."""
    (tmp_path / "f.txt").write_text("new")
    out = tmp_path / "out"
    out.mkdir()
    (out / "f.txt").write_text("old")
    code = f"{nameplate()}-apple-acorn"
    send = sender(clis, tmp_path, broker, code, [str(tmp_path / "f.txt")])
    argv = ["receive", code, "--yes", "-o", str(out), "--server", broker]
    receive = start(clis, Cli(tmp_path, "receive", argv))
    assert receive.wait() == 1
    assert send.wait() == 1
    assert "use --overwrite or --rename" in receive.err()
    assert "use --overwrite" not in send.err()
    assert "its folder already holds 1 file(s) of those names: f.txt" in send.err()
    assert "it can receive again with --overwrite or --rename" in send.err()
    assert (out / "f.txt").read_text() == "old"


# -- text, pipes --------------------------------------------------------------------


def test_send_text_is_printed_by_the_receiver(broker: str, tmp_path: Path, clis: list[Cli]) -> None:
    """``send --text``: the receiver prints the text on stdout and writes no file."""
    text = "meet at the café — 8 pm\nsecond line"
    code = f"{nameplate()}-apple-acorn"
    send = sender(clis, tmp_path, broker, code, ["--text", text])
    out = tmp_path / "out"
    argv = ["receive", code, "--yes", "-o", str(out), "--server", broker]
    receive = start(clis, Cli(tmp_path, "receive", argv))
    assert receive.wait() == 0, receive.err()
    assert send.wait() == 0
    assert receive.out().decode() == text + "\n"
    assert receive.err() == ""  # the text only, no progress noise (issue 23)
    assert not out.exists() or not any(out.iterdir())


def test_stdin_to_stdout_with_progress_on_stderr(
    broker: str, tmp_path: Path, clis: list[Cli]
) -> None:
    """``send -`` reads stdin; ``receive --stdout`` writes exactly those bytes to stdout."""
    payload = os.urandom(3 * MiB + 123)
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    code = f"{nameplate()}-apple-acorn"
    send = start(
        clis,
        Cli(tmp_path, "send", ["send", "-", "--code", code, "--server", broker], stdin=source),
    )
    wait_registered(broker, f"peerpy-xfer-{code.split('-')[0]}")
    out = tmp_path / "out"
    argv = ["receive", code, "--yes", "--stdout", "-o", str(out), "--server", broker]
    receive = start(clis, Cli(tmp_path, "receive", argv))
    assert receive.wait(120) == 0, receive.err()
    assert send.wait() == 0
    assert receive.out() == payload  # nothing else on stdout
    assert "SHA-256 verified" in receive.err()
    assert "read 3.0 MiB from standard input" in send.err()
    assert not out.exists() or not any(out.iterdir())


def test_stdout_takes_one_file_only(broker: str, tmp_path: Path, clis: list[Cli]) -> None:
    """``--stdout`` refuses an offer of several files before any byte, and says why."""
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    code = f"{nameplate()}-apple-acorn"
    send = sender(clis, tmp_path, broker, code, [str(tmp_path / "a"), str(tmp_path / "b")])
    argv = ["receive", code, "--yes", "--stdout", "--server", broker]
    receive = start(clis, Cli(tmp_path, "receive", argv))
    assert receive.wait() == 1
    assert send.wait() == 1
    assert receive.out() == b""
    assert "--stdout takes exactly one file, the sender offers 2" in receive.err()
    assert "standard output, which takes exactly one file" in send.err()


# -- QR, prompt -----------------------------------------------------------------------


def test_qr_code_is_printed(broker: str, tmp_path: Path, clis: list[Cli]) -> None:
    """``send --qr`` draws the receive command, broker included, as a QR code on stderr."""
    code = f"{nameplate()}-apple-acorn"
    send = sender(clis, tmp_path, broker, code, ["--text", "hi", "--qr"])
    deadline = time.monotonic() + 30
    while qr_text(f"peerpy receive --server {broker} {code}").splitlines()[3] not in send.err():
        assert time.monotonic() < deadline, send.err()
        time.sleep(0.05)
    assert qr_text(code) != qr_text(code + "x")


def test_code_words_complete() -> None:
    """Tab completion offers the words that start with what is typed."""
    assert complete_code("7-purp") == ["7-purple-"]
    assert complete_code("7-purple-saus") == ["7-purple-sausage-"]
    assert "7-apple-" in complete_code("7-a")
    assert complete_code("7") == []


def test_receive_prompts_for_the_code_with_tab_completion(
    broker: str, tmp_path: Path, clis: list[Cli]
) -> None:
    """``peerpy receive`` on a terminal asks for the code; Tab completes each word."""
    code = f"{nameplate()}-purple-sausage"
    send = sender(clis, tmp_path, broker, code, ["--text", "typed on a terminal"])
    master, slave = pty.openpty()
    err = (tmp_path / "prompt.err").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "peerpy.cli", "receive", "--yes", "--server", broker],
        stdin=slave,
        stdout=slave,
        stderr=err,
    )
    os.close(slave)
    seen = b""

    def read_until(needle: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while needle not in seen:
            assert time.monotonic() < deadline, (needle, seen)
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break

    try:
        read_until(b"Enter the code")
        number = code.split("-")[0]
        os.write(master, f"{number}-purp\t".encode())
        read_until(f"{number}-purple-".encode())
        os.write(master, b"saus\t")
        read_until(b"sausage-")
        os.write(master, b"\n")
        read_until(b"typed on a terminal")
        assert process.wait(60) == 0, (tmp_path / "prompt.err").read_text() + repr(seen)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        os.close(master)
        err.close()
    assert send.wait() == 0


def test_receive_without_code_off_a_terminal_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No code and no terminal to ask on: a usage error that says to pass the code."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["receive", "--server", f"http://127.0.0.1:{free_port()}/"]) == 2
    err = capsys.readouterr().err
    assert "no code given and standard input is not a terminal" in err


def test_send_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing to send, paths with --text, or - beside paths: exit 2 with the reason."""
    assert main(["send"]) == 2
    assert "nothing to send" in capsys.readouterr().err
    assert main(["send", "x", "--text", "hi"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["send", "-", "x"]) == 2
    assert "must be the only thing sent" in capsys.readouterr().err
