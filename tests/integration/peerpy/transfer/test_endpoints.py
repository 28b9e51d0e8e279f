"""Code-based send_files/receive_files with real Peers on our broker."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from peerpy.transfer import TransferUsageError, receive_files, send_files
from peerpy.transfer.auth import Code
from peerpy.transfer.protocol import MAX_FILES, MAX_OFFER_BYTES

from ....helpers.brokers import peerpy_server
from ....helpers.trees import long_names, make_deep_folder, remove_tree
from .support import FAST, transfer

pytestmark = pytest.mark.anyio


def many_files(top: Path, count: int) -> Path:
    """A folder of ``count`` empty files."""
    top.mkdir()
    for i in range(count):
        os.close(os.open(top / f"{i:06}", os.O_CREAT | os.O_WRONLY, 0o644))
    return top


@pytest.mark.parametrize("limit", ["entries", "offer-bytes"])
async def test_send_refuses_what_a_receiver_would_before_showing_a_code(
    tmp_path: Path, limit: str
) -> None:
    """A folder over MAX_FILES entries (the folder and 100 000 files), or whose list of
    names is over MAX_OFFER_BYTES, is refused before registering: no code is shown,
    so nobody is told a code that cannot work."""
    if limit == "entries":
        folder = many_files(tmp_path / "many", MAX_FILES)
    else:
        folder = long_names(tmp_path, MAX_OFFER_BYTES)
    codes: list[Code] = []
    async with peerpy_server() as url:
        with anyio.fail_after(60), pytest.raises(TransferUsageError, match="a receiver accepts"):
            await send_files([folder], on_code=codes.append, server=url)
    assert codes == []


async def test_a_folder_deeper_than_the_recursion_limit_is_sent(tmp_path: Path) -> None:
    """A folder nested 1 200 deep (a RecursionError traceback before) arrives whole."""
    folder = make_deep_folder(tmp_path / "deep", 1200)
    out = tmp_path / "out"
    try:
        async with peerpy_server() as url:
            sent, got = await transfer(url, [folder], out, "4711-deep-down")
        assert not isinstance(sent, Exception), sent
        assert not isinstance(got, Exception), got
        assert got.files == 1
        assert out.joinpath("deep", *["a"] * 1200, "f").read_text() == "x"
    finally:
        for top in (folder, out / "deep"):
            if top.exists():
                remove_tree(top)


async def test_a_code_on_a_local_broker_has_a_short_nameplate(tmp_path: Path) -> None:
    """On a broker of this machine the code stays short (nameplate 1..999) and works."""
    source = tmp_path / "f.txt"
    source.write_text("hello")
    codes: list[Code] = []
    async with peerpy_server() as url, anyio.create_task_group() as tg:

        async def sender() -> None:
            await send_files([source], on_code=codes.append, server=url, options=FAST)

        tg.start_soon(sender)
        with anyio.fail_after(20):
            while not codes:  # noqa: ASYNC110 - on_code is a plain callback
                await anyio.sleep(0.02)
            got = await receive_files(str(codes[0]), output=tmp_path / "out", server=url)
    assert 1 <= codes[0].nameplate <= 999
    assert (tmp_path / "out" / "f.txt").read_text() == "hello"
    assert got.files == 1
