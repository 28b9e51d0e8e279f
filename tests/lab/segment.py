"""Lab hosts on the broker's own segment, each running tests/lab/stream.py.

:func:`segment_lab` builds a lab whose ``pub`` runs the broker (at
:data:`SERVER`); tests add hosts to its segment (``Lab.add_segment_host``),
run :data:`STREAM` in them with :func:`stream_env`, and change their network.
The resumption and keepalive lab tests share it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from peerpy.backends import wrtc_installed

from ..helpers.unavailable import unavailable
from .fixture import BROKER_PORT
from .netlab import PUB_ADDRESS, Lab, lab_unavailable_reason

STREAM = os.path.join(os.path.dirname(__file__), "stream.py")
SERVER = f"http://{PUB_ADDRESS}:{BROKER_PORT}/"


def _unavailable(wrtc: bool) -> str | None:
    reason = lab_unavailable_reason()
    if reason is None and wrtc and not wrtc_installed():
        reason = "this lab test runs wrtc too (pip install 'peerpy-sdk[wrtc]')"
    return reason


@contextlib.contextmanager
def segment_lab(*, wrtc: bool) -> Iterator[Lab]:
    """A lab with the broker running in ``pub``; skips (fails in CI) where it cannot run.

    ``wrtc``: the test needs the wrtc backend as well.
    """
    reason = _unavailable(wrtc)
    if reason is not None:
        unavailable(reason)
    lab = Lab()
    try:
        lab.spawn(
            "pub",
            [sys.executable, "-m", "peerpy_server.cli", "--host", PUB_ADDRESS,
             "--port", str(BROKER_PORT), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        yield lab
    finally:
        lab.close()


def stream_env(backend: str) -> dict[str, str]:
    """The environment of a stream.py peer on ``backend``, with the lab's addresses."""
    env = dict(os.environ, PEERPY_BACKEND=backend, PEERPY_ICE_SERVERS="")
    env.pop("PEERPY_ICE_ADDRESSES", None)  # the lab's addresses, not loopback
    env.pop("PEERPY_SERVER", None)
    return env
