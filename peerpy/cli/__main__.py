"""``python -m peerpy.cli``: the same as the ``peerpy`` command."""

import sys

from . import main

sys.exit(main())
