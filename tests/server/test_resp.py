"""The raw RESP connection of the cluster's hot path, against a real ``redis-server``."""

from __future__ import annotations

import asyncio

import pytest
from peerpy_server.resp import RespConnection, encode, parse, supports
from redis.exceptions import ResponseError

from ..redis_support import RedisServer

pytestmark = pytest.mark.anyio


def test_parse_every_reply_type_and_cut_replies() -> None:
    data = b"*4\r\n:7\r\n$3\r\nabc\r\n*2\r\n+OK\r\n$-1\r\n-ERR no\r\n"
    value, end = parse(data, 0)
    assert end == len(data)
    assert value[:3] == [7, b"abc", [b"OK", None]]
    assert isinstance(value[3], ResponseError)
    for cut in range(len(data)):  # a reply cut anywhere is incomplete, not wrong
        value, end = parse(data[:cut], 0)
        assert end == 0
        assert not isinstance(value, list)
    with pytest.raises(ValueError, match="unknown RESP type"):
        parse(b"!x\r\n", 0)
    assert encode((b"PUBLISH", b"c", b"")) == b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$0\r\n\r\n"
    assert supports("redis://h:1/0")
    assert supports("unix:///tmp/r.sock")
    assert not supports("rediss://h:1/0")


async def test_publish_and_subscribe_on_a_real_redis(redis_server: RedisServer) -> None:
    got: list[bytes] = []
    arrived = asyncio.Event()

    def pushed(payloads: list[bytes]) -> None:
        got.extend(payloads)
        if len(got) == 3:
            arrived.set()

    sub = await RespConnection.open(redis_server.url, timeout=5, on_push=pushed)
    pub = await RespConnection.open(redis_server.url, timeout=5)
    try:
        assert await sub.call(b"SUBSCRIBE", b"resp-test") == [b"subscribe", b"resp-test", 1]
        big = bytes(range(256)) * 4096  # 1 MiB, binary: arrives over many reads
        replies = [pub.call(b"PUBLISH", b"resp-test", payload) for payload in (b"a", big, b"")]
        assert [await reply for reply in replies] == [1, 1, 1]
        await asyncio.wait_for(arrived.wait(), 10)
        assert got == [b"a", big, b""]
        error = await pub.call(b"NOSUCHCOMMAND")
        assert isinstance(error, ResponseError)
        assert await pub.call(b"PING") == b"PONG"  # still in step after an error
    finally:
        sub.close()
        pub.close()
    await asyncio.wait_for(sub.closed, 5)
    with pytest.raises(ConnectionError):
        sub.call(b"PING")


async def test_lost_connection_fails_pending_calls(redis_server: RedisServer) -> None:
    conn = await RespConnection.open(redis_server.url, timeout=5)
    blocked = conn.call(b"BLPOP", b"resp-test-nothing", b"0")  # never answered
    conn.abort()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(blocked, 5)
