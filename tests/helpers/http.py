"""A raw HTTP/1.1 client for the broker tests: one request per connection, no library in between.

What the broker writes is what the test reads (status line, headers, a
chunked body undone), so the tests see the wire, not a client's idea of it.
"""

from __future__ import annotations

import asyncio
import json


async def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a fresh connection; returns status, lower-cased headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    raw = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(status_line.split()[1]), parsed, body


async def health_says(port: int, path: str, **expected: object) -> bool:
    """Whether the broker's ``{path}/health`` report holds ``expected`` (for ``eventually``)."""
    _, _, body = await http_request(port, "GET", f"{path}/health")
    report = json.loads(body)
    return all(report.get(name) == value for name, value in expected.items())


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out
