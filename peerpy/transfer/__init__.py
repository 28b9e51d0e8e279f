"""Send files and folders between machines with a short code, end-to-end verified.

The pieces, from the bottom up:

* :mod:`~peerpy.transfer.protocol`: the messages, without I/O;
* :mod:`~peerpy.transfer.auth`: codes, SPAKE2 and the DTLS fingerprint check;
* :mod:`~peerpy.transfer.files`: manifests, safe names, partial files, resume;
* :mod:`~peerpy.transfer.options`: options, progress reports and stats;
* :mod:`~peerpy.transfer.channel`: the framed channel over a DataConnection,
  with its heartbeat, liveness and the authentication both sides run;
* :mod:`~peerpy.transfer.sender` and :mod:`~peerpy.transfer.receiver`: the two
  sides of one transfer over a channel;
* :mod:`~peerpy.transfer.endpoints`: the code-based ``send``/``receive`` with Peers.

Each module imports only those above it (``sender`` and ``receiver`` not each
other).  ``protocol``, ``auth``, ``files`` and ``options`` import no anyio or
aiortc; :mod:`~peerpy.transfer.session` keeps the names it held before the
split importable.

>>> stats = await send_files(["photos/"], on_code=print)          # doctest: +SKIP
>>> stats = await receive_files("7-purple-sausage", output=".")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from .auth import Code, make_code, parse_code
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all

if TYPE_CHECKING:
    from .endpoints import receive_files as receive_files
    from .endpoints import send_files as send_files
    from .files import Target as Target
    from .files import build_manifest as build_manifest
    from .options import NullProgress as NullProgress
    from .options import Progress as Progress
    from .options import TransferOptions as TransferOptions
    from .options import TransferStats as TransferStats

# The protocol, auth and errors modules import no I/O library; the names
# below load on first use (the endpoints need anyio and aiortc).
_LAZY = {
    "NullProgress": "options",
    "Progress": "options",
    "Target": "files",
    "TransferOptions": "options",
    "TransferStats": "options",
    "build_manifest": "files",
    "receive_files": "endpoints",
    "send_files": "endpoints",
}

__all__ = ["Code", "make_code", "parse_code", *_LAZY, *_errors_all]


__getattr__ = lazy_names(__name__, _LAZY)
