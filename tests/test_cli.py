"""The peerpy command line: parsing, send/receive through main(), chat, demo."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from peerpy_protocol.ids import random_token

from peerpy.cli import build_parser, main
from peerpy.cli.chat import run_chat
from peerpy.cli.progress import format_size, parse_size
from peerpy.transfer.errors import TransferUsageError

from .brokers import free_port, peerpy_server, threaded_peerpy_server, wait_registered


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
