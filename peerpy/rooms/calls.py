"""The media of one room, as a mesh: our stream to each member, each member's to us.

After :meth:`Room.call(tracks) <peerpy.room.Room.call>` this peer calls every
member with ``tracks``, and every member who joins later too; each member
that calls the room the same way reaches us by an incoming call, which
:class:`Calls` answers receive-only and announces with the room's ``stream``
event ``(member, MediaStream)``.  So each direction between two members is its
own call (its own peer connection): a member that only listens sends nothing,
and nobody has to renegotiate when someone starts or stops sending.  The calls
get the tracks through a relay, so each gets every frame (calls reading one
track directly would take turns at its frames) and closing a call leaves the
user's tracks alone; video frames are converted once, before the relay, to the
yuv420p the encoders take (aiortc's encoders, each in its own thread, would
otherwise convert one shared frame at once, and PyAV's converter, cached on
the frame, is not thread-safe: a segfault).

The cost is the mesh's: with ``n`` members each sending, every peer encodes
and uploads its media ``n - 1`` times and decodes ``n - 1`` streams, over
``2 (n - 1)`` peer connections.  That suits a handful of members; larger rooms
need a forwarding server (an SFU), which is a separate feature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import av
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay

from ..exceptions import PeerError
from ..mediaconnection import MediaConnection, MediaStream, check_tracks
from .mesh import MeshHost, room_metadata

__all__ = ["Calls"]

#: Told of each member's stream, once its call is up.
OnStream = Callable[[str, MediaStream], None]


class _Encodable(MediaStreamTrack):
    """``source``'s frames, video converted to yuv420p (see the module docstring)."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source

    async def recv(self) -> Any:
        """The source's next frame.  Cancelling loses nothing the source has not given."""
        frame = await self._source.recv()
        if isinstance(frame, av.VideoFrame) and frame.format.name != "yuv420p":
            return frame.reformat(format="yuv420p")
        return frame


class Calls:
    """The calls of one room (see the module docstring)."""

    def __init__(
        self, host: MeshHost, room: str, *, on_stream: OnStream, logger: logging.Logger
    ) -> None:
        self._host = host
        self._room = room
        self._on_stream = on_stream
        self._log = logger
        self._tracks: tuple[MediaStreamTrack, ...] | None = None
        self._relay = MediaRelay()  # one copy of each track per call
        self._encodable: dict[MediaStreamTrack, _Encodable] = {}
        self._out: dict[str, MediaConnection] = {}
        self._in: dict[str, MediaConnection] = {}
        self._closed = False

    async def start(
        self, tracks: Iterable[MediaStreamTrack], members: Iterable[str]
    ) -> dict[str, MediaConnection]:
        """Send ``tracks`` to every member (and later ones); return the calls that connected.

        A call that fails is logged and left out.  Cancelling stops waiting;
        the calls go on.
        """
        self._tracks = check_tracks(tracks)
        self._encodable = {t: self._encodable.get(t) or _Encodable(t) for t in self._tracks}
        done: dict[str, MediaConnection] = {}

        async def one(member: str) -> None:
            call = await self._call(member)
            if call is not None:
                done[member] = call

        async with anyio.create_task_group() as tg:
            for member in members:
                tg.start_soon(one, member)
        return done

    def add(self, member: str) -> None:
        """``member`` joined: call it too if we send."""
        if self._tracks is not None and not self._closed:
            self._host._spawn(lambda: self._call_quietly(member))

    def drop(self, member: str) -> None:
        """``member`` left: hang up both ways."""
        for table in (self._out, self._in):
            call = table.pop(member, None)
            if call is not None:
                self._host._spawn(call.close)

    def take(self, call: MediaConnection) -> None:
        """An incoming call from a member: answer it receive-only, then announce its stream."""
        old = self._in.pop(call.peer, None)
        self._in[call.peer] = call
        if old is not None:
            self._host._spawn(old.close)
        self._host._spawn(lambda: self._answer(call))

    async def close(self) -> None:
        """Hang up every call and wait.  Not cancellable."""
        self._closed = True
        calls = [*self._out.values(), *self._in.values()]
        self._out.clear()
        self._in.clear()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for call in calls:
                    tg.start_soon(call.close)

    async def _call(self, member: str) -> MediaConnection | None:
        assert self._tracks is not None
        sources = [self._encodable[track] for track in self._tracks]
        tracks = [self._relay.subscribe(source, buffered=False) for source in sources]
        try:
            call = await self._host.call(member, tracks, metadata=room_metadata(self._room))
        except PeerError as exc:
            self._log.warning("room %s: calling %s failed: %s", self._room, member, exc)
            return None
        if self._closed:
            await call.close()
            return None
        old = self._out.pop(member, None)
        self._out[member] = call
        if old is not None:
            await old.close()
        return call

    async def _call_quietly(self, member: str) -> None:
        await self._call(member)

    async def _answer(self, call: MediaConnection) -> None:
        try:
            await call.answer()
            stream = await call.wait_stream()
        except PeerError as exc:
            self._log.warning("room %s: the call from %s failed: %s", self._room, call.peer, exc)
            return
        if self._in.get(call.peer) is call:
            self._on_stream(call.peer, stream)
