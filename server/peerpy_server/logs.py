"""Rate-limited warnings: one line per kind of event per interval, not one per event.

An attacker controls how often the broker meets bad input; logging each
occurrence lets them grow the log faster than their own traffic (one WARNING
per dropped 45-byte message grew it three times faster).  A
:class:`WarningLimiter` logs the first warning of each *key* (a fixed string
naming the kind of event, never attacker-chosen text) and then at most one per
``interval`` seconds, adding how many similar warnings it suppressed in
between.  Like the realm, it reads no clock: callers pass ``now``.
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["WarningLimiter"]

_SUPPRESSED: Final = " (and %d similar suppressed in the last %.0f s)"


class WarningLimiter:
    """Log at most one WARNING per key every ``interval`` seconds (``None``: every one)."""

    __slots__ = ("_interval", "_last", "_suppressed")

    def __init__(self, interval: float | None) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

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
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed and last is not None:
            logger.warning(msg + _SUPPRESSED, *args, suppressed, now - last, stacklevel=2)
        else:
            logger.warning(msg, *args, stacklevel=2)

    def suppressed(self, key: str) -> int:
        """How many warnings of ``key`` are held back since the last one logged."""
        return self._suppressed.get(key, 0)
