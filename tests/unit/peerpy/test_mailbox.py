"""Mailbox (peerpy.mailbox), the bounded FIFO behind every inbox: order and bounds, no sockets."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from peerpy.mailbox import Mailbox, MailboxClosed, MailboxFull

pytestmark = pytest.mark.anyio


async def test_items_come_out_in_the_order_they_went_in() -> None:
    """get() returns the oldest item first, however puts and gets interleave."""
    box: Mailbox[int] = Mailbox()
    got: list[int] = []
    for n in range(5):
        box.put_nowait(n, size=n)
    got += [await box.get(), await box.get()]
    for n in range(5, 8):
        box.put_nowait(n)
    while len(box):
        got.append(await box.get())
    assert got == list(range(8))
    assert box.bytes == 0


async def test_a_waiting_reader_gets_each_item_in_order() -> None:
    """A reader blocked in get() is woken per item and sees them in order."""
    box: Mailbox[int] = Mailbox()
    got: list[int] = []

    async def read(count: int) -> None:
        for _ in range(count):
            got.append(await box.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(read, 6)
        await anyio.lowlevel.checkpoint()
        for n in range(6):
            box.put_nowait(n)
            if n % 2:
                await anyio.lowlevel.checkpoint()
    assert got == list(range(6))


async def test_bounds_refuse_and_close_keeps_what_is_held() -> None:
    """Past max_items or max_bytes put_nowait raises; a closed box still yields its items."""
    box: Mailbox[str] = Mailbox(max_items=2, max_bytes=10)
    box.put_nowait("a", 6)
    with pytest.raises(MailboxFull):
        box.put_nowait("b", 5)
    box.put_nowait("b", 4)
    with pytest.raises(MailboxFull):
        box.put_nowait("c", 0)
    box.close()
    with pytest.raises(MailboxClosed):
        box.put_nowait("d")
    assert [await box.get(), await box.get()] == ["a", "b"]
    with pytest.raises(MailboxClosed):
        await box.get()
