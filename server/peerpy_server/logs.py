"""Rate-limited warnings: one line per kind of event per interval, not one per event.

An attacker controls how often the broker meets bad input; logging each
occurrence lets them grow the log faster than their own traffic (one WARNING
per dropped 45-byte message grew it three times faster).  A
:class:`WarningLimiter` logs the first warning of each *key* (a fixed string
naming the kind of event, never attacker-chosen text) and then at most one per
``interval`` seconds, adding how many similar warnings it suppressed in
between; :meth:`WarningLimiter.flush` (the broker's timer calls it) reports
counts still held back once their interval is over, so the tail of an attack is
logged too.  Like the realm, it reads no clock: callers pass ``now``.

Secrets never reach the log: :class:`RedactSecrets` (from
:mod:`peerpy_protocol.redact`) replaces ``token=`` values and JWTs in every
record logged on the broker's loggers (:data:`REDACTED_LOGGERS`, filtered from
import on, embedded brokers included), and the CLI's handler carries it too,
so third-party records (websockets, uvicorn) it prints are redacted as well.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

from peerpy_protocol.redact import RedactSecrets, redact

__all__ = ["REDACTED_LOGGERS", "JsonFormatter", "RedactSecrets", "WarningLimiter", "redact"]

#: The broker's loggers; each carries a :class:`RedactSecrets` filter.
#: ``peerpy_server.websocket`` is websockets' protocol log, which shows the
#: handshake's request line (with the token) at DEBUG.
REDACTED_LOGGERS: Final = (
    "peerpy_server.asgi",
    "peerpy_server.auth",
    "peerpy_server.broker",
    "peerpy_server.cluster",
    "peerpy_server.connection",
    "peerpy_server.http",
    "peerpy_server.ice",
    "peerpy_server.realm",
    "peerpy_server.rooms",
    "peerpy_server.sfu",
    "peerpy_server.stun",
    "peerpy_server.websocket",
)
_REDACT: Final = RedactSecrets()
for _name in REDACTED_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACT)

_SUPPRESSED: Final = " (and %d similar suppressed in the last %.0f s)"
_FLUSHED: Final = "%d more %r warnings suppressed in the last %.0f s"


class WarningLimiter:
    """Log at most one WARNING per key every ``interval`` seconds (``None``: every one)."""

    __slots__ = ("_interval", "_last", "_loggers", "_suppressed")

    def __init__(self, interval: float | None) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._loggers: dict[str, logging.Logger] = {}  # where each held-back count goes

    def warning(
        self, logger: logging.Logger, key: str, now: float, msg: str, *args: object
    ) -> None:
        """Log ``msg % args`` on ``logger`` unless ``key`` was logged less than ``interval`` ago."""
        interval = self._interval
        if interval is None:
            logger.warning(msg, *args, stacklevel=2)
            return
        last = self._last.get(key)
        if last is not None and now - last < interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self._loggers[key] = logger
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed and last is not None:
            logger.warning(msg + _SUPPRESSED, *args, suppressed, now - last, stacklevel=2)
        else:
            logger.warning(msg, *args, stacklevel=2)

    def flush(self, now: float) -> None:
        """Log the counts held back for at least ``interval`` seconds (one line per key)."""
        interval = self._interval
        if interval is None or not self._suppressed:
            return
        for key, count in list(self._suppressed.items()):
            last = self._last[key]
            if now - last >= interval:
                del self._suppressed[key]
                self._last[key] = now
                self._loggers.pop(key).warning(_FLUSHED, count, key, now - last)

    def suppressed(self, key: str) -> int:
        """How many warnings of ``key`` are held back since the last one logged."""
        return self._suppressed.get(key, 0)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``--log-format json``).

    Keys: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
    ``message`` (formatted with its arguments) and, for an exception,
    ``exception`` (the traceback text).
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
