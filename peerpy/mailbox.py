"""Bounded mailboxes: where aiortc's callbacks hand things to async code.

aiortc reports messages, channels and state changes through synchronous
callbacks that cannot wait.  Everything they produce goes into a
:class:`Mailbox`, bounded in count and in bytes, and async code takes it out
with :meth:`Mailbox.get`.  A full mailbox refuses the item (the caller decides:
usually the connection fails loudly) instead of growing without limit.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ["Mailbox", "MailboxClosed", "MailboxFull"]

T = TypeVar("T")


class MailboxFull(Exception):
    """The mailbox holds its maximum count or bytes."""


class MailboxClosed(Exception):
    """The mailbox is closed and empty."""


class Mailbox(Generic[T]):
    """A FIFO of items with sizes; ``put_nowait`` from callbacks, ``await get()`` to read."""

    def __init__(self, max_items: float = math.inf, max_bytes: float = math.inf) -> None:
        self._items: deque[tuple[T, int]] = deque()
        self._max_items = max_items
        #: The bound on :attr:`bytes` (a plain attribute: fixed at creation).
        self.max_bytes = max_bytes
        self._bytes = 0
        self._closed = False
        self._ready = anyio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Total size of the items held."""
        return self._bytes

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (items held can still be read)."""
        return self._closed

    def put_nowait(self, item: T, size: int = 0) -> None:
        """Add ``item``.

        Raise :class:`MailboxFull` if over a bound, :class:`MailboxClosed` if closed.
        """
        if self._closed:
            raise MailboxClosed
        if len(self._items) >= self._max_items or self._bytes + size > self.max_bytes:
            raise MailboxFull
        self._items.append((item, size))
        self._bytes += size
        self._ready.set()

    async def get(self) -> T:
        """Take the oldest item; raise :class:`MailboxClosed` once closed and empty.

        Cancelling loses nothing.
        """
        while not self._items:
            if self._closed:
                raise MailboxClosed
            if self._ready.is_set():
                self._ready = anyio.Event()
            await self._ready.wait()
        item, size = self._items.popleft()
        self._bytes -= size
        return item

    def drain(self) -> list[T]:
        """Take every held item, oldest first, without waiting."""
        items = [item for item, _ in self._items]
        self.clear()
        return items

    def close(self) -> None:
        """Refuse new items and wake readers; held items stay readable."""
        self._closed = True
        self._ready.set()

    def clear(self) -> None:
        """Drop every held item."""
        self._items.clear()
        self._bytes = 0
