"""Send files and folders between machines with a short code, end-to-end verified.

The pieces, from the bottom up:

* :mod:`~peerpy.transfer.protocol`: the messages, without I/O;
* :mod:`~peerpy.transfer.auth`: codes, SPAKE2 and the DTLS fingerprint check;
* :mod:`~peerpy.transfer.files`: manifests, safe names, partial files, resume;
* :mod:`~peerpy.transfer.session`: sender and receiver over a DataConnection;
* :mod:`~peerpy.transfer.endpoints`: the code-based ``send``/``receive`` with Peers.

>>> stats = await send_files(["photos/"], on_code=print)          # doctest: +SKIP
>>> stats = await receive_files("7-purple-sausage", output=".")   # doctest: +SKIP
"""

from __future__ import annotations

from .auth import Code, make_code, parse_code
from .endpoints import receive_files, send_files
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .files import Target, build_manifest
from .session import NullProgress, Progress, TransferOptions, TransferStats

__all__ = [
    "Code",
    "NullProgress",
    "Progress",
    "Target",
    "TransferOptions",
    "TransferStats",
    "build_manifest",
    "make_code",
    "parse_code",
    "receive_files",
    "send_files",
    *_errors_all,
]
