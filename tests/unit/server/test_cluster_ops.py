"""The cluster's pure pieces: the key builder, the scripts' names, the relay codec."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from peerpy_server.cluster import codec
from peerpy_server.cluster.ops import Eval, Mode, Publish, Route
from peerpy_server.cluster.scripts import CLAIM, Keys, Lua


def test_keys_are_built_under_the_prefix() -> None:
    """Every key and channel sits under the prefix, with the layout the Lua scripts use."""
    keys = Keys("p:")
    assert keys.ids == "p:ids"
    assert keys.expiry == "p:expiry"
    assert keys.channel("i1") == keys.channels + "i1" == "p:inst:i1"
    assert keys.claim("a")[:6] == ["p:id:a", "p:q:a", "p:qs:a", "p:qb:a", "p:expiry", "p:ids"]
    assert keys.claim("a")[6:] == keys.epoch() == ["p:epoch", "p:settling"]
    assert keys.release("a") == ["p:id:a", "p:ids"]
    assert keys.refresh(["a", "b"]) == ["p:ids", "p:id:a", "p:id:b"]


def test_scripts_are_named_by_their_sha() -> None:
    """EVALSHA names: the SHA1 of each script, all distinct."""
    assert Lua.CLAIM.value is CLAIM
    assert Lua.CLAIM.sha == hashlib.sha1(CLAIM.encode()).hexdigest()
    assert len({script.sha for script in Lua}) == len(Lua) == 12


def test_operations_are_typed_values() -> None:
    """Each operation names its fields; modes are the wire letters ROUTE reads."""
    route = Route("d", "{}", "s", Mode.RELAY)
    assert (route.dst, route.src, route.mode.value) == ("d", "s", "r")
    assert [mode.value for mode in Mode] == ["r", "n", "q"]
    assert Publish("c", b"x") == Publish("c", b"x")
    op = Eval(Lua.RELEASE, ["k"], ["a"])
    assert op.done is None
    assert op.failed is None


@pytest.mark.parametrize(
    ("mode", "dst", "frame"),
    [("r", "d", '{"type":"OFFER"}'), ("c", "é", "ü" * 3), ("f", "inst", ""), ("x", "a:b", "1:")],
)
def test_entries_round_trip_by_byte_length(mode: str, dst: str, frame: str) -> None:
    """An entry's lengths are UTF-8 byte counts: colons and non-ASCII text survive."""
    data = codec.entry(mode, dst, frame) + codec.entry("n", "z", "{}")
    assert codec.entries(data) == [(mode, dst, frame), ("n", "z", "{}")]


def test_entry_matches_what_route_builds_in_lua() -> None:
    """The format ROUTE concatenates: ``<mode><len>:<dst><len>:<frame>``."""
    assert codec.entry("r", "ab", "xyz") == b"r2:ab3:xyz"
    assert codec.entry("c", "é", "") == b"c2:\xc3\xa90:"


@pytest.mark.parametrize(
    ("frame", "src"), [('{"src":"a"}', "a"), ("{}", ""), ("not json", ""), ('{"src":1}', "")]
)
def test_source_of_a_frame(frame: str, src: str) -> None:
    """The sender of a relayed frame, or ``""`` if the frame does not name one."""
    assert codec.source(frame) == src


def test_pure_modules_import_no_io() -> None:
    """The pure modules import neither redis, asyncio nor the broker (nor each other's I/O)."""
    folder = Path(codec.__file__).parent
    for name in ["ops", "scripts", "codec", "owners", "outbox", "batch"]:
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}  # fmt: skip
        imported |= {("." * node.level) + (node.module or "") for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}  # fmt: skip
        io = {m for m in imported if m.split(".")[0] in ("redis", "asyncio", "anyio", "socket")}
        io |= {m for m in imported if m in (".wire", ".instance", "..broker")}
        assert not io, (name, io)
