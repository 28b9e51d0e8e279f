"""Rooms whose media goes through Janus: the broker's side (``--janus``, docs/rooms.md).

:class:`Sfu` keeps one :class:`~peerpy_server.sfu.janus.JanusAdmin` per
instance connected (reconnecting every ``retry`` seconds while it is down) and
knows which instances are live.  The rooms front (:mod:`peerpy_server.core.rooms`)
calls it at two points:

* :meth:`Sfu.admit`, when the directory accepted a member and before its
  ``ROOM-MEMBERS`` goes out: the room is created on its instance if needed
  (:mod:`.placement`: the best live one by rendezvous hashing; secret and PIN
  derived from ``--janus-key``), a token is minted for the member and added to
  the room's allowed list, and the answer is the member's
  :class:`~peerpy_protocol.janus.SfuInfo` (or ``None`` and why);
* :meth:`Sfu.left`, when a member left: its token is removed and its Janus
  participants kicked; when the room is empty, the Janus room is destroyed.

Janus checks a joiner's PIN and token, not the display name it shows, so an
admitted member could show itself as another member.  Each member is given the
participant id it must join with (:func:`~.placement.participant_id`), and
every ``check`` seconds the broker lists the participants of each room with
local members and kicks those whose id is not the one of the member their
display name claims (an *impostor*, logged at WARNING).

When an instance dies or comes back, every room with a member on this broker
is placed again; a room that moves is created on its new instance and each of
its local members gets a ``ROOM-SFU`` with a new token (or ``"sfu": null`` and
the reason when no instance is live), so they publish again there.  Brokers of
one Redis cluster each do this for their own members, and agree on the
instance because placement depends only on the room, the list and liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final

import attrs
from peerpy_protocol.janus import NO_SUCH_ROOM, JanusError, SfuInfo
from peerpy_protocol.rooms import RoomSfu, serialize

from .janus import JanusAdmin
from .placement import Instance, choose, credentials, mint_token, participant_id, room_number

__all__ = ["Admitted", "Sfu"]

logger: Final = logging.getLogger("peerpy_server.sfu")

#: What :meth:`Sfu.admit` answers: the member's SFU room, or ``None`` and why.
Admitted = Callable[[SfuInfo | None, str], None]
_FAILURES: Final = (JanusError, ConnectionError, OSError, asyncio.TimeoutError)


@attrs.define
class _Room:
    """A room with members on this broker: where it lives and their tokens there."""

    instance: Instance | None = None
    tokens: dict[str, str] = attrs.Factory(dict)
    created: set[str] = attrs.Factory(set)  # instance urls it was created on


def _instance_list(instances: Iterable[Instance]) -> list[Instance]:
    return list(instances)


@attrs.define(eq=False, kw_only=True)
class Sfu:
    """The broker's Janus instances and its rooms on them (see the module docstring).

    ``send(peer_id, frame)`` delivers a frame to a member; ``local_members(room)``
    lists the members of ``room`` connected to this broker; ``retry`` and ``check``
    are in seconds.
    """

    instances: list[Instance] = attrs.field(kw_only=False, converter=_instance_list)
    _key: bytes
    _admin_key: str | None
    _publishers: int
    _send: Callable[[str, str], bool]
    _local_members: Callable[[str], list[str]]
    _retry: float = 1.0
    _check: float = 1.0
    #: Urls of the instances connected now.
    live: set[str] = attrs.field(init=False, factory=set)
    _admins: dict[str, JanusAdmin] = attrs.field(init=False, factory=dict)
    _rooms: dict[str, _Room] = attrs.field(init=False, factory=dict)
    _tasks: set[asyncio.Task[None]] = attrs.field(init=False, factory=set)
    _supervisors: list[asyncio.Task[None]] = attrs.field(init=False, factory=list)

    # -- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        """Connect to every instance; return once each is connected or its first try failed."""
        tried = [asyncio.Event() for _ in self.instances]
        for instance, event in zip(self.instances, tried, strict=True):
            task = asyncio.ensure_future(self._supervise(instance, event))
            self._supervisors.append(task)
        self._supervisors.append(asyncio.ensure_future(self._check_loop()))
        await asyncio.gather(*(event.wait() for event in tried))

    async def aclose(self) -> None:
        """Stop every connection and pending request (Janus drops our sessions, not the rooms)."""
        tasks = [*self._supervisors, *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, *_FAILURES):
                await task
        self.live.clear()

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.ensure_future(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self, instance: Instance, tried: asyncio.Event) -> None:
        """Keep a session on ``instance``; mark it live while it lasts."""
        down_logged = False
        while True:
            admin = JanusAdmin(instance.url, self._admin_key)
            run = asyncio.ensure_future(admin.run())
            ready = asyncio.ensure_future(admin.ready.wait())
            await asyncio.wait({run, ready}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if admin.ready.is_set():
                self._admins[instance.url] = admin
                self.live.add(instance.url)
                logger.info("Connected to Janus at %s", instance.url)
                down_logged = False
                tried.set()
                self._replace()
            try:
                await run
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not down_logged:
                    logger.warning("Janus at %s is unreachable: %s", instance.url, exc)
                    down_logged = True
            if instance.url in self.live:
                self.live.discard(instance.url)
                del self._admins[instance.url]
                for state in self._rooms.values():
                    state.created.discard(instance.url)
                logger.warning("Lost Janus at %s: moving its rooms", instance.url)
                self._replace()
            tried.set()
            await asyncio.sleep(self._retry)

    # -- the rooms front's calls ----------------------------------------------

    def admit(self, room: str, member: str, then: Admitted) -> None:
        """Make ``room`` ready on its instance and mint ``member``'s token; answer ``then``."""
        self._spawn(lambda: self._admit(room, member, then))

    def left(self, room: str, member: str, empty: bool) -> None:
        """``member`` left ``room``: revoke its token, kick it; destroy the room if ``empty``."""
        self._spawn(lambda: self._left(room, member, empty))

    # -- the work ----------------------------------------------------------------

    def _info(self, instance: Instance, room: str, member: str, token: str) -> SfuInfo:
        _, pin = credentials(self._key, instance, room)
        member_id = participant_id(self._key, instance, room, member)
        return SfuInfo(instance.public_url, room_number(room), pin, token, member_id)

    async def _ensure(self, state: _Room, instance: Instance, room: str) -> None:
        """Create ``room`` on ``instance`` unless this broker already did since it connected."""
        if instance.url in state.created:
            return
        secret, pin = credentials(self._key, instance, room)
        await self._admins[instance.url].create_room(
            room_number(room), secret=secret, pin=pin, publishers=self._publishers,
            description=room,
        )  # fmt: skip
        state.created.add(instance.url)

    async def _token(self, instance: Instance, room: str, member: str) -> str:
        token = mint_token()
        secret, _ = credentials(self._key, instance, room)
        admin = self._admins[instance.url]
        await admin.allow(room_number(room), secret=secret, token=token, allowed=True)
        return token

    def _target(self, room: str) -> Instance | None:
        return choose(room, self.instances, self.live)

    async def _admit(self, room: str, member: str, then: Admitted) -> None:
        state = self._rooms.setdefault(room, _Room())
        instance = self._target(room)
        if instance is None:
            then(None, "no SFU (Janus) instance is reachable")
            return
        try:
            await self._ensure(state, instance, room)
            token = await self._token(instance, room, member)
        except _FAILURES as exc:
            logger.warning("Could not admit %s to room %s on %s: %s", member, room, instance.url, exc)  # fmt: skip # noqa: E501
            then(None, f"the SFU at {instance.public_url} failed: {exc}")
            return
        state.instance = instance
        state.tokens[member] = token
        then(self._info(instance, room, member, token), "")

    async def _left(self, room: str, member: str, empty: bool) -> None:
        state = self._rooms.get(room)
        token = state.tokens.pop(member, None) if state is not None else None
        instance = state.instance if state is not None else self._target(room)
        if instance is not None and instance.url in self.live:
            admin = self._admins[instance.url]
            secret, _ = credentials(self._key, instance, room)
            with contextlib.suppress(*_FAILURES):
                if token is not None:
                    await admin.allow(room_number(room), secret=secret, token=token, allowed=False)
                if not empty:
                    await admin.kick_display(room_number(room), secret=secret, display=member)
        if empty:
            urls = set(state.created if state is not None else ())
            if instance is not None:
                urls.add(instance.url)
            self._rooms.pop(room, None)
            for url in urls:
                await self._destroy(url, room)
        elif state is not None and not state.tokens and not self._local_members(room):
            self._rooms.pop(room, None)

    async def _check_loop(self) -> None:
        """Every ``check`` seconds, kick the impostors of each room (see the module docstring)."""
        while True:
            await asyncio.sleep(self._check)
            for room, state in list(self._rooms.items()):
                instance = state.instance
                if instance is not None and instance.url in state.created:
                    with contextlib.suppress(*_FAILURES):
                        await self._kick_impostors(instance, room)

    async def _kick_impostors(self, instance: Instance, room: str) -> None:
        admin = self._admins.get(instance.url)
        if admin is None:
            return
        number = room_number(room)
        secret, _ = credentials(self._key, instance, room)
        for participant, display in await admin.participants(number):
            if display is None or participant != participant_id(self._key, instance, room, display):
                logger.warning("Kicking participant %d of room %s on %s: it shows itself as %r without that member's id", participant, room, instance.url, display)  # fmt: skip # noqa: E501
                await admin.kick(number, secret=secret, participant=participant)

    async def _destroy(self, url: str, room: str) -> None:
        admin = self._admins.get(url)
        if admin is None:
            return
        instance = next(i for i in self.instances if i.url == url)
        secret, _ = credentials(self._key, instance, room)
        try:
            await admin.destroy_room(room_number(room), secret=secret)
        except JanusError as exc:
            if exc.code != NO_SUCH_ROOM:
                logger.warning("Could not destroy room %s on %s: %s", room, url, exc)
        except _FAILURES as exc:
            logger.info("Could not destroy room %s on %s: %s", room, url, exc)

    def _replace(self) -> None:
        """Place every room with local members again; move those whose instance changed."""
        for room, state in list(self._rooms.items()):
            target = self._target(room)
            if target != state.instance or (target is not None and target.url not in state.created):
                self._spawn(functools.partial(self._move, room, target))

    async def _move(self, room: str, target: Instance | None) -> None:
        state = self._rooms.get(room)
        if state is None:
            return
        members = self._local_members(room)
        state.instance = target
        state.tokens.clear()
        if target is None:
            frame = serialize(RoomSfu(room, None, "the SFU (Janus) of this room is unreachable"))
            for member in members:
                self._send(member, frame)
            return
        try:
            await self._ensure(state, target, room)
            for member in members:
                token = await self._token(target, room, member)
                state.tokens[member] = token
                info = self._info(target, room, member, token)
                self._send(member, serialize(RoomSfu(room, info)))
        except _FAILURES as exc:
            logger.warning("Could not move room %s to %s: %s", room, target.url, exc)
        logger.info("Room %s moved to Janus at %s (%d local members)", room, target.url, len(members))  # fmt: skip # noqa: E501
