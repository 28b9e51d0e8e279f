"""The owner cache: which instance holds an id we routed to lately.

:data:`~.scripts.ROUTE` returns the instance each message was published to;
the writer remembers it per id, and the next routes to that id skip the Lua
lookup (one plain PUBLISH per instance and batch, see :mod:`.batch`).  The
cache may be stale, never wrong in effect: an instance that gets an entry for
an id it does not hold routes it again and says so (:meth:`OwnerCache.forget`),
and a PUBLISH nobody receives drops that instance (:meth:`OwnerCache.drop`).
Bounded: past ``limit`` entries it starts afresh.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["OwnerCache"]


class OwnerCache:
    """The instance holding each id (never this instance's own ids), at most ``limit``."""

    def __init__(self, instance: str, limit: int) -> None:
        self._instance = instance
        self._limit = limit
        self._owners: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._owners

    def __getitem__(self, peer_id: str) -> str:
        return self._owners[peer_id]

    def get(self, peer_id: str) -> str | None:
        """The cached owner of ``peer_id``, or ``None``."""
        return self._owners.get(peer_id)

    def values(self) -> Iterable[str]:
        """The cached owners (an instance once per id it holds)."""
        return self._owners.values()

    def learn(self, peer_id: str, owner: str) -> None:
        """Cache ``owner`` (a ROUTE result) as the instance holding ``peer_id``."""
        owners = self._owners
        if owner != self._instance and owners.get(peer_id) != owner:
            if len(owners) >= self._limit:
                owners.clear()
            owners[peer_id] = owner

    def forget(self, peer_id: str, owner: str) -> None:
        """Drop the cached owner of ``peer_id`` if it is still ``owner``."""
        if self._owners.get(peer_id) == owner:
            del self._owners[peer_id]

    def drop(self, gone: str) -> None:
        """Forget every cached id of the instance ``gone``."""
        owners = self._owners
        for peer_id in [peer_id for peer_id, owner in owners.items() if owner == gone]:
            del owners[peer_id]
