"""The batches instances relay to each other on their channels: entries by byte length.

One PUBLISH carries entries ``<mode><len>:<dst><len>:<frame>`` (lengths in
bytes of the UTF-8 text), built here or by :data:`~.scripts.ROUTE` in Lua.
Modes: ``r`` (relay, queue if the id left), ``n`` (relay, drop if it left),
``c``/``m`` (sent on a cached owner: as ``r``/``n``, but route again if the id
is not here), ``f`` (``dst`` is the publishing instance), ``x`` (forget the
cached owner ``frame`` of ``dst``), ``s`` (``dst`` was taken over with the
token ``frame``: close its socket here).  Pure: no I/O.
"""

from __future__ import annotations

import json

__all__ = ["entries", "entry", "source"]


def entry(mode: str, dst: str, frame: str) -> bytes:
    """One entry of a relayed batch (what ROUTE builds in Lua)."""
    dst_bytes, frame_bytes = dst.encode(), frame.encode()
    return b"%s%d:%s%d:%s" % (
        mode.encode(),
        len(dst_bytes),
        dst_bytes,
        len(frame_bytes),
        frame_bytes,
    )


def entries(data: bytes) -> list[tuple[str, str, str]]:
    """Split a relayed batch into ``(mode, dst, frame)``."""
    out = []
    pos, size = 0, len(data)
    while pos < size:
        mode = chr(data[pos])
        colon = data.index(b":", pos + 1)
        end = colon + 1 + int(data[pos + 1 : colon])
        dst = data[colon + 1 : end].decode()
        colon = data.index(b":", end)
        pos = colon + 1 + int(data[end:colon])
        out.append((mode, dst, data[colon + 1 : pos].decode()))
    return out


def source(frame: str) -> str:
    """The ``src`` of a relayed frame (the broker wrote it; ``""`` if absent)."""
    try:
        value = json.loads(frame).get("src", "")
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""
