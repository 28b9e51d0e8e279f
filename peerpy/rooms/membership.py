"""Who is in a room, from the broker's word: a snapshot, then join and leave notices.

:class:`Membership` is the pure half of a :class:`~peerpy.room.Room`: it
takes what the broker says about one room (``ROOM-MEMBERS``, ``ROOM-JOIN``,
``ROOM-LEAVE``) and what the mesh observes (a member's connection died), keeps
the members and their metadata, and returns what changed as events:

=====================  =============================================================
input                  events
=====================  =============================================================
first snapshot         :class:`Joined` (``new``) for each member, then the notices
                       that arrived before it, replayed in order
later snapshot         the difference: :class:`Left` for members gone,
(joined again after    :class:`Joined` for new ones and for changed metadata
a lost broker session)
``joined(id, meta)``   :class:`Joined`, ``new`` unless it was a member (new metadata)
``left(id)``           :class:`Left`, if it was a member (else nothing: a second word
                       about the same departure, from the broker or the mesh)
=====================  =============================================================

Our own id never becomes a member.  Who opens the connection between two
members is fixed (:func:`offers`), so two members that learn of each other at
the same moment open one connection, not two.  No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeAlias

import attrs

__all__ = ["Joined", "Left", "MemberEvent", "Membership", "offers"]


@attrs.frozen
class Joined:
    """``member`` joined (``new``), or joined again with new ``metadata``."""

    member: str
    metadata: Any
    new: bool = True


@attrs.frozen
class Left:
    """``member`` left, crashed, or its connection with us died."""

    member: str


MemberEvent: TypeAlias = Joined | Left


def offers(me: str, other: str) -> bool:
    """Whether ``me`` opens the connection to ``other``: the lexically smaller id does.

    Ids follow the PeerJS id rule (ASCII), so Python's and JavaScript's string
    order agree: a browser member applies the same rule.
    """
    return me < other


class Membership:
    """The members of one room, other than ``me`` (see the module docstring)."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._members: dict[str, Any] = {}
        #: Whether a ``ROOM-MEMBERS`` snapshot arrived since joining.
        self.snapshot_taken = False
        self._early: list[MemberEvent] = []  # notices before the first snapshot

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._members))

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> Mapping[str, Any]:
        """The members' ids and metadata (the live dict: wrap it before handing it out)."""
        return self._members

    def snapshot(self, members: Mapping[str, Any]) -> list[MemberEvent]:
        """Apply a ``ROOM-MEMBERS`` snapshot; return what changed."""
        members = {member: meta for member, meta in members.items() if member != self.me}
        events: list[MemberEvent] = []
        for member in list(self._members):
            if member not in members:
                events += self.left(member)
        for member, metadata in members.items():
            events += self._join(member, metadata)
        if not self.snapshot_taken:
            self.snapshot_taken = True
            early, self._early = self._early, []
            for event in early:
                events += self.apply(event)
        return events

    def joined(self, member: str, metadata: Any) -> list[MemberEvent]:
        """Apply a ``ROOM-JOIN`` notice (``member`` joined, or has new metadata)."""
        if not self.snapshot_taken:
            self._early.append(Joined(member, metadata))
            return []
        return self._join(member, metadata)

    def left(self, member: str) -> list[MemberEvent]:
        """Apply a ``ROOM-LEAVE`` notice, or the mesh's word that ``member`` is gone."""
        if not self.snapshot_taken:
            self._early.append(Left(member))
            return []
        if self._members.pop(member, _ABSENT) is _ABSENT:
            return []
        return [Left(member)]

    def apply(self, event: MemberEvent) -> list[MemberEvent]:
        """Apply a notice given as an event."""
        if isinstance(event, Joined):
            return self.joined(event.member, event.metadata)
        return self.left(event.member)

    def clear(self) -> None:
        """Forget every member, without events: we left the room."""
        self._members.clear()
        self._early.clear()

    def _join(self, member: str, metadata: Any) -> list[MemberEvent]:
        if member == self.me:
            return []
        previous = self._members.get(member, _ABSENT)
        self._members[member] = metadata
        if previous is _ABSENT:
            return [Joined(member, metadata, new=True)]
        if previous != metadata:
            return [Joined(member, metadata, new=False)]
        return []


_ABSENT: Any = object()
