"""Start a slow-to-start server once per option set and share it between tests.

A node ``peer`` process costs about a second to start on a 2-core machine;
the conformance suite used to start one per test.  :class:`PerOptions` starts
one per distinct set of options on first use and stops them all (each by its
own context manager, so by PID) when the owning fixture ends.  Tests sharing a
server must leave nothing registered or queued on it that the next one could
see: each closes its clients before it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PerOptions(Generic[T]):
    """One running ``start(**options)`` per distinct ``options``, until :meth:`close`."""

    def __init__(self, start: Callable[..., contextlib.AbstractContextManager[T]]) -> None:
        self._start = start
        self._running: dict[Hashable, T] = {}
        self._stack = contextlib.ExitStack()

    def get(self, **options: Any) -> T:
        """The running instance for ``options``, started now if it is the first use."""
        key = tuple(sorted(options.items()))
        if key not in self._running:
            self._running[key] = self._stack.enter_context(self._start(**options))
        return self._running[key]

    def close(self) -> None:
        """Stop every instance started, the last started first."""
        self._running.clear()
        self._stack.close()
