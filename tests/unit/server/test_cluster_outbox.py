"""The outbox: ordered, bounded in operations and in bytes (in all and per sender)."""

from __future__ import annotations

import sys

from peerpy_server.cluster.ops import Eval, Mode, Publish, Route
from peerpy_server.cluster.outbox import OP_OVERHEAD, Outbox
from peerpy_server.cluster.scripts import Lua

KIB = "x" * 1024
ONE = OP_OVERHEAD + sys.getsizeof(KIB)  # what one route of KIB costs


def route(src: str, dst: str = "d") -> Route:
    return Route(dst, KIB, src, Mode.RELAY)


def test_keeps_order_and_counts_until_done() -> None:
    """Taken operations still count until the writer is done with them."""
    box = Outbox(10, max_bytes=100 * ONE, max_sender_bytes=100 * ONE)
    ops = [route("a", "1"), route("b", "2"), route("a", "3")]
    for op in ops:
        assert box.add(op)
    assert box.bytes == 3 * ONE
    assert box.sender_bytes("a") == 2 * ONE
    batch = box.take(2)
    assert batch == ops[:2]
    assert len(box) == 1
    assert box.bytes == 3 * ONE  # being written: still held
    box.done(batch)
    assert box.bytes == ONE
    assert box.sender_bytes("a") == ONE
    assert box.sender_bytes("b") == 0
    box.done(box.take(5))
    assert box.bytes == 0


def test_one_sender_is_refused_past_its_share() -> None:
    """A sender past its byte cap is refused; another sender still gets in."""
    box = Outbox(100, max_bytes=10 * ONE, max_sender_bytes=3 * ONE)
    assert [box.add(route("flood")) for _ in range(4)] == [True, True, True, False]
    assert box.add(route("other"))
    assert box.sender_bytes("flood") == 3 * ONE


def test_total_bytes_are_bounded() -> None:
    """Past ``max_bytes`` in all, every sender and every claim is refused."""
    box = Outbox(100, max_bytes=4 * ONE, max_sender_bytes=3 * ONE)
    assert all(box.add(route(src)) for src in "abcd")
    assert not box.add(route("e"))
    assert not box.add(Eval(Lua.CLAIM, ["k"], ["a"]))
    assert box.bytes == 4 * ONE


def test_operation_count_is_bounded_and_notices_pass() -> None:
    """Past ``limit`` operations a bounded add is refused; a notice still goes."""
    box = Outbox(2, max_bytes=100 * ONE, max_sender_bytes=100 * ONE)
    assert box.add(Eval(Lua.RELEASE, ["k"], ["a"]))
    assert box.add(route("a"))
    assert not box.add(route("b"))
    assert box.add(Publish("p:inst:i", b"x1:a2:me"), bounded=False)
    assert len(box) == 3
    box.done(box.take(3))
    assert box.bytes == 0
