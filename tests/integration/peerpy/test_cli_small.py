"""The command line's small things (issue 23), each seen as a person at a terminal would.

Chat leaves on Ctrl-D while waiting and frees its id; ``--text -`` reads
standard input; a received text is printed alone, unasked; an error is told
once; a half-typed code never reaches the sender; nothing wraps off a
terminal.  Every case runs ``python -m peerpy.cli`` processes against our
broker on 127.0.0.1 (a thread of this process), stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...helpers.brokers import threaded_peerpy_server, wait_registered
from ...helpers.cli import Command, commands


@pytest.fixture
def broker() -> Iterator[str]:
    with threaded_peerpy_server() as url:
        yield url


@pytest.fixture
def procs() -> Iterator[list[Command]]:
    yield from commands()


def nameplate() -> int:
    return int.from_bytes(os.urandom(3), "big") + 1000


def registered(url: str) -> list[str]:
    with urllib.request.urlopen(url + "peerjs/peers", timeout=5) as response:
        ids: list[str] = json.loads(response.read())
    return ids


def sender(procs: list[Command], tmp: Path, url: str, argv: list[str], **kw: Path | str) -> str:
    """Start ``peerpy send ARGV`` with a fresh code; return the code once it is registered."""
    code = f"{nameplate()}-apple-acorn"
    procs.append(Command(tmp, "send", ["send", *argv, "--code", code, "--server", url], **kw))
    wait_registered(url, f"peerpy-xfer-{code.split('-')[0]}")
    return code


def test_chat_leaves_on_end_of_input_while_waiting_and_frees_the_id(
    broker: str, tmp_path: Path, procs: list[Command]
) -> None:
    me = f"chatter{nameplate()}"
    chat = Command(tmp_path, "chat", ["chat", me, "--server", broker], stdin="pipe")
    procs.append(chat)
    wait_registered(broker, me)
    assert chat.process.stdin is not None
    chat.process.stdin.close()  # Ctrl-D at a terminal
    assert chat.wait(timeout=20) == 0, chat.err()
    assert chat.out().splitlines()[-1] == "* input ended: left before anyone connected"
    assert me not in registered(broker)  # released at once: the id can be taken again


def test_text_from_stdin_is_printed_alone_without_asking(
    broker: str, tmp_path: Path, procs: list[Command]
) -> None:
    """``send --text -``; the receiver (no --yes, no terminal) prints the text, nothing else."""
    text = "a line from a pipe\nand a second one"
    (tmp_path / "stdin").write_text(text)
    code = sender(procs, tmp_path, broker, ["--text", "-"], stdin=tmp_path / "stdin")
    receiver = Command(tmp_path, "receive", ["receive", code, "--server", broker])
    procs.append(receiver)
    assert receiver.wait() == 0, receiver.err()
    assert procs[0].wait() == 0, procs[0].err()
    assert receiver.out() == text + "\n"
    assert receiver.err() == ""


def test_an_error_told_as_it_happens_is_not_printed_again(
    broker: str, tmp_path: Path, procs: list[Command]
) -> None:
    """The sender is interrupted mid-transfer: the receiver says "the sender stopped" once,
    then only how to resume."""
    with (tmp_path / "big.bin").open("wb") as big:
        big.truncate(512 * 1024 * 1024)  # sparse: quick to make, read and hash
    code = sender(procs, tmp_path, broker, [str(tmp_path / "big.bin")])
    argv = ["receive", code, "--yes", "-o", str(tmp_path / "out"), "--server", broker]
    receiver = Command(tmp_path, "receive", argv)
    procs.append(receiver)
    receiver.wait_for("receiving 1 file")
    procs[0].process.send_signal(signal.SIGINT)
    assert procs[0].wait() == 130
    assert receiver.wait() == 1
    assert receiver.err().count("the sender stopped") == 1, receiver.err()
    assert "to resume, receive again into it" in receiver.err().splitlines()[-1]


def test_a_half_typed_code_is_refused_before_the_sender_hears_of_it(
    broker: str, tmp_path: Path, procs: list[Command]
) -> None:
    (tmp_path / "f.txt").write_text("still there")
    code = sender(procs, tmp_path, broker, [str(tmp_path / "f.txt")])
    half = code[: code.rindex("-") + 3]  # 1234-apple-ac
    early = Command(tmp_path, "early", ["receive", half, "--yes", "--server", broker])
    procs.append(early)
    assert early.wait() == 2
    assert f"{half!r} looks half-typed: 'ac' is the start of acorn" in early.err()
    # The sender's one try is intact: the whole code still works.
    out = tmp_path / "out"
    whole = Command(
        tmp_path, "whole", ["receive", code, "--yes", "-o", str(out), "--server", broker]
    )
    procs.append(whole)
    assert whole.wait() == 0, whole.err()
    assert (out / "f.txt").read_text() == "still there"


def test_nothing_wraps_off_a_terminal(broker: str, tmp_path: Path, procs: list[Command]) -> None:
    """A hint longer than 80 columns stays one line in a log file (rich wrapped at 80)."""
    (tmp_path / "f.txt").write_text("x")
    code = f"{nameplate()}-acorn-actor-adult-agent-album-alpine-amber-anchor"  # 8 words
    send = Command(tmp_path, "send", ["send", str(tmp_path / "f.txt"), "--code", code,
                                      "--server", broker])  # fmt: skip
    procs.append(send)
    line = f"On the other machine run:  peerpy receive --server {broker} {code}"
    assert len(line) > 80
    send.wait_for(line)
    assert line in send.err().splitlines()


def test_messages_print_as_written() -> None:
    """No rich markup: ``[wrtc]`` in a message (the backend line's advice) is not eaten."""
    text = "pip install 'peerpy-sdk[wrtc]'"
    code = f"from peerpy.cli.progress import stderr_console; stderr_console().print({text!r})"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=30, check=True)  # fmt: skip
    assert shown.stderr == text + "\n"
