"""The transfer package's layers: the pure modules import no I/O library."""

from __future__ import annotations

import subprocess
import sys

import pytest


def python_prints(code: str) -> str:
    """What a fresh interpreter prints running ``code``."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("module", ["protocol", "auth", "errors", "files", "options"])
def test_pure_transfer_modules_import_no_io_library(module: str) -> None:
    """The sans-I/O layers pull in neither anyio, aiortc nor websockets."""
    loaded = python_prints(
        f"import sys, peerpy.transfer.{module}; "
        "print([m for m in ('anyio', 'aiortc', 'websockets') if m in sys.modules])"
    )
    assert loaded == "[]"


def test_the_sender_does_not_import_the_receiver() -> None:
    """The two sides of a transfer share only the layers below them."""
    loaded = python_prints(
        "import sys, peerpy.transfer.sender; print('peerpy.transfer.receiver' in sys.modules)"
    )
    assert loaded == "False"
