"""peerpy_server.core is sans-I/O: importing it loads no event loop, socket, Redis or Prometheus."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_io_library() -> None:
    """Every core module imports without asyncio, websockets, redis or prometheus_client."""
    code = (
        "import sys\n"
        "import peerpy_server.core.admission, peerpy_server.core.host\n"
        "import peerpy_server.core.realm, peerpy_server.core.session, peerpy_server.core.stats\n"
        "banned = ('asyncio', 'websockets', 'redis', 'prometheus_client')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in banned)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
