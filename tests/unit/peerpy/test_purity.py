"""The SDK's pure modules import no I/O library (anyio, asyncio, aiortc, websockets)."""

from __future__ import annotations

import subprocess
import sys

PURE = (
    "peerpy.admission",
    "peerpy.keepalive",
    "peerpy.registry",
    "peerpy.routing",
    "peerpy.rooms.membership",
)


def test_pure_modules_import_no_io_library() -> None:
    """Admission, keepalive, registry, routing, room membership import no I/O library."""
    code = (
        f"import sys, {', '.join(PURE)};"
        "bad = [m for m in ('anyio', 'aiortc', 'websockets', 'asyncio') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
