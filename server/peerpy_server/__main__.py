"""``python -m peerpy_server``: the same as the ``peerpy-server`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":  # pragma: no branch
    sys.exit(main())
