"""The batch compiler: outbox operations into the fewest Redis calls, in order."""

from __future__ import annotations

from peerpy_server.cluster.batch import BatchCompiler
from peerpy_server.cluster.codec import entries
from peerpy_server.cluster.ops import Direct, Eval, Mode, Op, Publish, Route, RouteCall
from peerpy_server.cluster.owners import OwnerCache
from peerpy_server.cluster.scripts import Keys, Lua

KEYS = Keys("p:")


def compiler() -> BatchCompiler:
    return BatchCompiler(KEYS, "me", max_queue_messages=7, max_queue_bytes=99)


def test_uncached_routes_make_one_route_call() -> None:
    """A run of routes with no cached owner: one ROUTE call, its arguments in order."""
    batch: list[Op] = [Route("a", "f1", "s", Mode.RELAY), Route("b", "f2", "s", Mode.NOTICE)]
    (call,) = compiler().compile(batch, OwnerCache("me", 10))
    assert call == RouteCall(
        ["p:expiry"],
        ["p:", "p:inst:", "7", "99", "2", "a", "f1", "s", "r", "b", "f2", "s", "n"],
        [0, 1],
    )


def test_cached_routes_are_one_direct_publish_per_owner() -> None:
    """Cached owners: one PUBLISH per instance (header first, c/m entries), the rest ROUTE."""
    owners = OwnerCache("me", 10)
    owners.learn("a", "i1")
    owners.learn("b", "i2")
    owners.learn("q", "i1")
    batch: list[Op] = [
        Route("a", "f1", "s", Mode.RELAY),
        Route("b", "f2", "s", Mode.RELAY),
        Route("x", "f3", "s", Mode.RELAY),  # not cached
        Route("a", "f4", "s", Mode.NOTICE),
        Route("q", "f5", "s", Mode.QUEUE),  # queue only: never direct
    ]
    calls = compiler().compile(batch, owners)
    assert [type(call) for call in calls] == [Direct, Direct, RouteCall]
    one, two, rest = calls
    assert isinstance(one, Direct)
    assert isinstance(two, Direct)
    assert isinstance(rest, RouteCall)
    assert (one.owner, one.channel, one.indexes) == ("i1", "p:inst:i1", [0, 3])
    assert entries(one.payload) == [("f", "me", ""), ("c", "a", "f1"), ("m", "a", "f4")]
    assert (two.owner, two.indexes) == ("i2", [1])
    assert rest.indexes == [2, 4]
    assert rest.args[5:] == ["x", "f3", "s", "r", "q", "f5", "s", "q"]


def test_other_operations_cut_runs_and_keep_their_place() -> None:
    """A claim between routes splits them: calls come out in the outbox's order."""
    claim = Eval(Lua.CLAIM, ["k"], ["a"])
    notice = Publish("p:inst:i9", b"x1:a2:i1")
    batch: list[Op] = [
        Route("a", "f1", "s", Mode.RELAY),
        claim,
        Route("b", "f2", "s", Mode.RELAY),
        notice,
    ]
    calls = compiler().compile(batch, OwnerCache("me", 10))
    assert len(calls) == 4
    first, second, third, fourth = calls
    assert isinstance(first, RouteCall)
    assert first.indexes == [0]
    assert second is claim
    assert isinstance(third, RouteCall)
    assert third.indexes == [2]
    assert fourth is notice


def test_route_call_for_the_routes_sent_again() -> None:
    """Direct publishes nobody received go through ROUTE, keeping their batch indexes."""
    routes = [(3, Route("a", "f", "s", Mode.RELAY)), (8, Route("b", "g", "t", Mode.NOTICE))]
    call = compiler().route_call(routes)
    assert call.indexes == [3, 8]
    assert call.args[4:] == ["2", "a", "f", "s", "r", "b", "g", "t", "n"]


def test_empty_batch_makes_no_call() -> None:
    assert compiler().compile([], OwnerCache("me", 10)) == []
