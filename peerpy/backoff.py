"""How long ``auto_reconnect`` waits between attempts: pure code, no clock.

The waits double from ``initial`` up to ``maximum`` and each is shortened by a
random fraction (up to ``jitter``), so that many peers losing one broker do not
knock on it in step when it comes back.  The cap bounds how late a peer notices
the broker's return, however long the outage: at most ``maximum`` seconds plus
one connection attempt.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterator

from .exceptions import ConfigurationError

__all__ = ["backoff_delays"]


def backoff_delays(
    initial: float,
    maximum: float,
    *,
    jitter: float = 0.5,
    random: Callable[[], float] = _random.random,
) -> Iterator[float]:
    """The waits before each attempt, an endless iterator.

    Attempt ``n`` (from 0) waits ``min(initial * 2**n, maximum)`` times a
    factor in ``[1 - jitter, 1]`` drawn from ``random()`` (a float in
    ``[0, 1)``), so no wait exceeds ``maximum``.  Raise
    :class:`~peerpy.exceptions.ConfigurationError` (here, not at the first
    wait) unless both bounds are positive and ``0 <= jitter < 1``.
    """
    if not (initial > 0 and maximum > 0):
        raise ConfigurationError(
            f"reconnect back-off bounds must be positive, got {initial!r} and {maximum!r}"
        )
    if not 0 <= jitter < 1:
        raise ConfigurationError(f"reconnect jitter must be in [0, 1), got {jitter!r}")
    return _delays(min(initial, maximum), maximum, jitter, random)


def _delays(
    delay: float, maximum: float, jitter: float, random: Callable[[], float]
) -> Iterator[float]:
    while True:
        yield delay * (1 - jitter * random())
        delay = min(delay * 2, maximum)
