"""The owner cache: learned from ROUTE results, forgotten when stale, bounded."""

from __future__ import annotations

from peerpy_server.cluster.owners import OwnerCache


def test_learns_owners_but_never_itself() -> None:
    """A ROUTE result naming another instance is cached; our own name is not."""
    cache = OwnerCache("me", limit=10)
    cache.learn("a", "i1")
    cache.learn("b", "me")
    assert cache.get("a") == cache["a"] == "i1"
    assert "b" not in cache
    assert cache.get("b") is None
    cache.learn("a", "i2")  # the id moved
    assert cache["a"] == "i2"


def test_forget_only_the_owner_named() -> None:
    """``x`` from an instance that no longer holds the id: forgotten only if still cached."""
    cache = OwnerCache("me", limit=10)
    cache.learn("a", "i1")
    cache.forget("a", "i2")  # a stale notice: the cache already knows better
    assert cache["a"] == "i1"
    cache.forget("a", "i1")
    assert "a" not in cache
    cache.forget("a", "i1")  # twice: nothing left to forget
    assert len(cache) == 0


def test_drop_an_instance_forgets_all_its_ids() -> None:
    """A PUBLISH nobody received: every id of that instance is forgotten, no other."""
    cache = OwnerCache("me", limit=10)
    for peer_id, owner in (("a", "i1"), ("b", "i1"), ("c", "i2")):
        cache.learn(peer_id, owner)
    cache.drop("i1")
    assert sorted(cache.values()) == ["i2"]
    assert "c" in cache


def test_bounded_starts_afresh_past_the_limit() -> None:
    """Past ``limit`` entries the cache is cleared before the new one is kept."""
    cache = OwnerCache("me", limit=3)
    for n in range(3):
        cache.learn(f"id{n}", "i1")
    assert len(cache) == 3
    cache.learn("id0", "i1")  # already known: no growth, no reset
    assert len(cache) == 3
    cache.learn("new", "i2")
    assert len(cache) == 1
    assert cache["new"] == "i2"
