"""Wait for a condition instead of sleeping a fixed time.

A fixed sleep "long enough for X" is either too long (the suite waits it out
on every run) or too short (the test fails under load); polling for X itself is
neither.  ``silent(x)``-style waits that assert that nothing happens cannot be
replaced this way: they are replaced by markers (a message that must arrive
first) where the broker gives an order to rely on.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import anyio

#: Seconds between two checks of a condition.
POLL_EVERY = 0.02


async def eventually(
    condition: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    within: float,
    what: str,
    every: float = POLL_EVERY,
) -> None:
    """Return as soon as ``condition()`` (plain or async) is true; fail after ``within`` s.

    Raises ``AssertionError`` naming ``what`` when it never became true.
    Cancelling stops the polling.
    """
    with anyio.move_on_after(within):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(every)
    raise AssertionError(f"{what}: not within {within} s")
