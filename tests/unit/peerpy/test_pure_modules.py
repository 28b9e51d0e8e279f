"""The SDK's value objects and backend choice import no WebRTC, event-loop or I/O library.

``NetworkPolicy`` (peerpy.network), the relay hold (peerpy.relayhold),
``Route`` (peerpy.route), the connection statistics (peerpy.stats), the ICE diagnosis
(peerpy.diagnosis), choosing a backend (peerpy.backends) and wrtc's SDP
filtering (peerpy.backends._sdp) are pure; aiortc, aioice and libwebrtc load
only with the backend object that uses them (peerpy.backends.aiortc, .wrtc).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = (
    "peerpy.network",
    "peerpy.route",
    "peerpy.stats",
    "peerpy.diagnosis",
    "peerpy.backends",
    "peerpy.backends._sdp",
    "peerpy.relayhold",
)
#: What a pure module must not pull in.
IMPURE = ("aiortc", "aioice", "webrtc", "av", "anyio", "asyncio", "websockets")


def imported_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after ``statement``."""
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_library(module: str) -> None:
    """Importing a pure module loads none of aiortc, aioice, webrtc, av, anyio, asyncio."""
    assert imported_after(f"import {module}") & set(IMPURE) == set()


def test_the_check_sees_an_impure_module() -> None:
    """The aiortc backend object does load aiortc and aioice (the check can fail)."""
    assert {"aiortc", "aioice"} <= imported_after("import peerpy.backends.aiortc")


def test_moved_names_stay_importable_from_peerpy_network() -> None:
    """peerpy.network still gives the aiortc helpers it held, loaded on first use."""
    from peerpy import network
    from peerpy.backends import aiortc

    assert network.create_peer_connection is aiortc.create_peer_connection
    assert network.watch_remote is aiortc.watch_remote
    assert network.ice_sockets is aiortc.ice_sockets
    assert network.SUPPORTED_BACKENDS is aiortc.SUPPORTED_BACKENDS
    with pytest.raises(AttributeError, match="no_such_name"):
        network.no_such_name  # noqa: B018
