"""The framed channel of one transfer: messages over a DataConnection, with a heartbeat.

:class:`Channel` sends and receives the messages of
:mod:`peerpy.transfer.protocol` over an open, reliable (ordered) data
connection, one frame per data-channel message, and turns every way the
other side can fail into a :class:`~peerpy.transfer.errors.TransferError`:
its ``error`` message, a closed connection, or silence.

Liveness: each side sends a heartbeat after ``heartbeat_interval`` seconds
without sending anything (:meth:`Channel.beat`), and counts the other side as
gone after ``idle_timeout`` seconds without receiving anything (killed, frozen
or cut off), unless its resumable connection is resuming from a network change
(:meth:`Channel._may_resume`): then it waits until the connection resumes or fails.
:func:`guarded` runs one side's work with the heartbeat going
and, when that work is cancelled (Ctrl-C), sends an ``error`` message with
code ``stopped`` before returning, so the other side learns at once that it
was on purpose (:class:`~peerpy.transfer.errors.StoppedError`).
:func:`authenticate` is the handshake both sides run first
(:mod:`peerpy.transfer.auth`).

The sender (:mod:`~peerpy.transfer.sender`) and the receiver
(:mod:`~peerpy.transfer.receiver`) are built on this module; a test can build a
hostile peer from it and the protocol module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio

from ..backends import backend_of
from ..dataconnection import DataConnection
from ..exceptions import ConnectionClosedError, PeerError
from . import errors
from .auth import Code, Handshake, Role, connection_fingerprints
from .errors import (
    PeerVanishedError,
    RejectedError,
    RemoteError,
    StoppedError,
    TransferError,
    TransferProtocolError,
)
from .options import TransferOptions
from .protocol import Confirm, Decoder, Error, Heartbeat, Message, Pake, encode

__all__ = [
    "REMOTE_ERRORS",
    "RESUMED_GRACE",
    "Channel",
    "authenticate",
    "guarded",
    "with_heartbeat",
]

#: Seconds of silence a connection that resumed since its last frame may keep before
#: it counts (its transport may still be backing off from the outage).
RESUMED_GRACE: Final = 10.0

M = TypeVar("M")

#: The error an ``error`` message of each code raises on our side.
REMOTE_ERRORS: dict[str, type[TransferError]] = {
    cls.type: cls
    for cls in (
        errors.AuthenticationError,
        errors.ManInTheMiddleError,
        errors.IntegrityError,
        errors.DiskFullError,
        errors.TargetExistsError,
        errors.UnsafePathError,
        errors.TransferProtocolError,
        errors.StoppedError,
    )
}


class Channel:
    """Transfer messages over a DataConnection, with liveness and clear errors."""

    def __init__(
        self, conn: DataConnection, options: TransferOptions, other: str = "the other side"
    ) -> None:
        self.conn = conn
        self.options = options
        #: How messages name the peer: "the sender" or "the receiver".
        self.other = other
        self.decoder = Decoder()
        self.authenticated = False
        self.last_sent = time.monotonic()
        self._generation = conn.generation  # the peer connection the last frame came on
        self._resumed_at = 0.0

    def set_authenticated(self) -> None:
        """The peer proved the code: lift the pre-authentication frame limit."""
        self.authenticated = True
        self.decoder.authenticated()

    async def send(self, message: Message) -> None:
        """Send one message.

        Each frame is one data-channel message, queued whole or not at all:
        cancelling never leaves a message half sent.
        """
        for frame in encode(message):
            try:
                await self.conn.send(frame)
            except PeerError as exc:
                raise PeerVanishedError(f"{self.other} went away: {exc}") from None
            self.last_sent = time.monotonic()

    async def recv(self, limit: float | None = None) -> Message:
        """The next message other than a heartbeat; raise on silence, close or ``error``.

        Each wait for a frame is bounded by ``idle_timeout``; ``limit`` bounds
        the whole wait (heartbeats keep a waiting peer alive, not forever).
        Cancelling loses nothing.
        """
        if limit is None:  # the data path: no cancel scope per message
            return await self._next()
        with anyio.move_on_after(limit):
            return await self._next()
        raise TransferError(f"{self.other} did not answer within {limit:g} s")

    async def _next(self) -> Message:
        while True:
            message = self.decoder.feed(await self._frame())
            if message is None or isinstance(message, Heartbeat):
                continue
            if isinstance(message, Error):
                cls = REMOTE_ERRORS.get(message.code, RemoteError)
                raise cls(f"{self.other} stopped: {message.message}")
            return message

    async def _frame(self) -> Any:
        idle = self.options.idle_timeout
        try:
            while True:
                try:
                    with anyio.fail_after(idle):
                        frame = await self.conn.recv()
                    self._generation = self.conn.generation
                    return frame
                except TimeoutError:
                    if not self._may_resume():
                        raise
        except TimeoutError:
            raise PeerVanishedError(
                f"{self.other} sent nothing for {idle:g} s (killed, suspended or cut off)"
            ) from None
        except ConnectionClosedError:
            error = self.conn.error
            if error is not None and not isinstance(error, ConnectionClosedError):
                raise PeerVanishedError(
                    f"the connection to {self.other} was lost: {error}"
                ) from None
            raise PeerVanishedError(
                f"{self.other} closed the connection before the transfer finished"
            ) from None

    def _may_resume(self) -> bool:
        """Whether a silence is a network change the connection resumes from (wait on).

        Only a resumable connection (see :mod:`peerpy.generation`) that is
        resuming with evidence of a network change
        (:attr:`~peerpy.DataConnection.network_change`: our own address of the
        path went away, or the remote signalled a resume) is waited for; it
        resumes or fails by itself within ``Timeouts.resume``.  A killed or
        frozen remote gives no such evidence: its silence is reported after
        ``idle_timeout``, as on any connection.
        """
        if self.conn.reconnecting and self.conn.network_change is not None:
            return True
        # Resumed since the last frame: the path is new, but its transport may hold
        # what it queued during the outage until a retransmission timer that backed
        # off meanwhile fires (seen after wrtc's ICE restarts: 3 s and more of
        # silence).  Grant it RESUMED_GRACE from the first silence seen since.
        generation = self.conn.generation
        if generation != self._generation:
            self._generation = generation
            self._resumed_at = time.monotonic()
        return time.monotonic() - self._resumed_at < RESUMED_GRACE

    async def expect(self, kind: type[M], limit: float | None = None) -> M:
        """The next message, which must be a ``kind``.  Cancelling loses nothing."""
        message = await self.recv(limit)
        if not isinstance(message, kind):
            name = type(message).__name__
            raise TransferProtocolError(f"expected {kind.__name__}, {self.other} sent {name}")
        return message

    async def beat(self) -> None:
        """Send a heartbeat whenever nothing else went out for ``heartbeat_interval``.

        Runs until cancelled (cancelling it stops the heartbeats, nothing else)
        or until the connection is gone.
        """
        interval = self.options.heartbeat_interval
        while True:
            await anyio.sleep(max(0.0, self.last_sent + interval - time.monotonic()))
            if time.monotonic() - self.last_sent >= interval:
                try:
                    await self.send(Heartbeat())
                except PeerVanishedError:
                    return  # the receiving side reports it

    async def report(self, exc: BaseException) -> None:
        """Tell the other side why we stop (best effort, bounded).  Not cancellable."""
        if not isinstance(exc, TransferError) or isinstance(exc, PeerVanishedError):
            return
        if isinstance(exc, RemoteError | RejectedError | StoppedError):
            return
        await self.say_last(Error(exc.type, exc.for_peer or str(exc)))

    async def say_last(self, message: Message) -> None:
        """Send a last message and give it ``stop_grace`` seconds to arrive.

        The other side closes once it has read it; closing ours first could
        drop it.  Shielded from cancellation, bounded in time.
        """
        with anyio.move_on_after(self.options.stop_grace, shield=True):
            with contextlib.suppress(PeerError):
                await self.send(message)
                await self.conn.wait_closed()


async def authenticate(ch: Channel, code: Code, role: Role) -> None:
    """PAKE + fingerprint confirmation; raise AuthenticationError on mismatch.

    Cancelling leaves the channel unauthenticated (the caller ends the attempt).
    """
    pc = ch.conn.peer_connection
    local, remote = connection_fingerprints(pc, backend_of(pc).remote_certificate(pc))
    handshake = Handshake(code, role, local, remote)
    await ch.send(handshake.start())
    confirm = handshake.on_pake(await ch.expect(Pake))
    await ch.send(confirm)
    handshake.on_confirm(await ch.expect(Confirm))
    ch.set_authenticated()


async def with_heartbeat(ch: Channel, body: Callable[[], Awaitable[M]]) -> M:
    """Run ``body`` while heartbeats go out; raise what it raised (no exception group).

    Cancelling cancels ``body`` and the heartbeats.
    """
    result: list[M] = []
    failure: list[Exception] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.beat)
        try:
            result.append(await body())
        except Exception as exc:
            failure.append(exc)
        finally:
            tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return result[0]


async def guarded(ch: Channel, body: Callable[[], Awaitable[M]]) -> M:
    """Run ``body``; on a transfer error or cancellation, tell the other side, then raise.

    Cancelling sends ``error: stopped`` (bounded by ``stop_grace``) before the
    cancellation goes on.
    """
    try:
        return await with_heartbeat(ch, body)
    except PeerVanishedError as exc:
        exc.after_auth = ch.authenticated
        raise
    except TransferError as exc:
        await ch.report(exc)
        raise
    except anyio.get_cancelled_exc_class():
        # Stopped on purpose (Ctrl-C, SIGTERM, the caller's timeout): say so.
        await ch.say_last(Error(StoppedError.type, "it was interrupted (Ctrl-C or a signal)"))
        raise
