"""Code-based sending and receiving: the Peers around a sender and a receiver.

:func:`send_files` registers the sender on the broker under a nameplate id
(``peerpy-xfer-7``), reports the code, and serves the first receiver that
connects; :func:`receive_files` connects to the nameplate of a code.  Both
take the usual Peer settings (``server``, ``ice_servers``, ``ice_addresses``;
the environment fills in what is not given, as for :class:`peerpy.Peer`).

The sender gives each code exactly one authentication attempt, as
magic-wormhole does: a wrong code ends the transfer on both sides, so a
guesser gets one try per code.  Once both sides proved the code, a lost
connection (say, ICE consent expiring on a saturated link) is not fatal: the
receiver reconnects under the same code, both sides authenticate again, and
the transfer resumes from the verified partial files (up to
:data:`MAX_RECONNECTS` times).  A connection that drops *before* the proof
ends the transfer, so aborting mid-handshake earns a guesser nothing.

Memory against strangers: the transfer Peers decode nothing (``raw``
serialization, frames of at most 64 KiB, :data:`SENDER_LIMITS`), and until
the code is proved a frame over 4 KiB ends the attempt like a wrong code.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

import anyio
import anyio.lowlevel

from ..config import Limits, Timeouts, resolve_servers
from ..dataconnection import DataConnection
from ..exceptions import PeerUnavailableError, UnavailableIdError
from ..peer import Peer
from ..serialization import Limits as DecodingLimits
from .auth import Code, make_code, nameplate_span, parse_code
from .errors import (
    NoSenderError,
    PeerVanishedError,
    StoppedError,
    TransferError,
    TransferUsageError,
)
from .failures import watching_logger
from .files import Conflict, Source, Target, build_manifest, text_manifest
from .options import Progress, TransferOptions, TransferStats
from .protocol import MAX_FRAME, PROTOCOL
from .receiver import Completed, Confirmer, accept_all, receive_over
from .sender import send_over

__all__ = [
    "MAX_RECONNECTS",
    "RECEIVER_LIMITS",
    "SENDER_LIMITS",
    "SERIALIZATION",
    "TRANSFER_RESUME",
    "TRANSFER_TIMEOUTS",
    "PeerSettings",
    "receive_files",
    "send_files",
]

#: Transfers frame their own messages (:mod:`peerpy.transfer.protocol`): the
#: data channel carries them untouched, nothing is decoded before our checks.
SERIALIZATION = "raw"
#: The sender's Peer: frames of at most 64 KiB, little held unread (the
#: receiver sends only acks and heartbeats once the offer is accepted), and a
#: short send queue, so that a stop message queued behind file data still
#: arrives within a second on a slow link (aiortc's SCTP, not this queue,
#: bounds the rate).
SENDER_LIMITS = Limits(
    receive_buffer_bytes=1024 * 1024,
    send_high_water=512 * 1024,
    send_low_water=128 * 1024,
    decoding=DecodingLimits(max_message_bytes=MAX_FRAME),
)
#: The receiver's Peer: frames of at most 64 KiB (the sender's window bounds the rest).
RECEIVER_LIMITS = Limits(decoding=DecodingLimits(max_message_bytes=MAX_FRAME))
#: Nameplates tried before giving up on finding a free one.
_NAMEPLATE_TRIES = 20
#: Times a transfer reconnects (same code, re-authenticated) after a lost
#: connection, resuming where it stopped.
MAX_RECONNECTS = 5
_log = logging.getLogger("peerpy.transfer")


#: Seconds a transfer's connection may take to resume after a network change.
TRANSFER_RESUME = 30.0
#: The transfer's Peers: resumable connections (a network change mid-transfer
#: is survived in the same process, see :mod:`peerpy.generation`), and a quick
#: re-registration after our own address changed (the new generation is
#: negotiated through the broker).  A killed or frozen other side is still
#: reported after ``idle_timeout``: the channel waits on a resumption only
#: with evidence of a network change (:meth:`~peerpy.transfer.channel.Channel.recv`).
TRANSFER_TIMEOUTS = Timeouts(resume=TRANSFER_RESUME, reconnect_initial=0.1, reconnect_max=1.0)


class PeerSettings(TypedDict, total=False):
    """How a transfer side's :class:`~peerpy.Peer` reaches the broker and the network
    (keywords of :func:`send_files` and :func:`receive_files`; ``None`` or absent:
    the environment's or Peer's default)."""

    #: The broker URL (``PEERPY_SERVER``).
    server: str | None
    #: STUN/TURN URLs (``PEERPY_ICE_SERVERS``).
    ice_servers: Sequence[str] | None
    #: The local addresses ICE may gather on (``PEERPY_ICE_ADDRESSES``).
    ice_addresses: Sequence[str] | None
    #: The broker's API key.
    key: str | None
    #: A token for the broker (a JWT).
    token: str | None


def _peer_kwargs(limits: Limits, **given: Any) -> dict[str, Any]:
    """The Peer keywords of a transfer side: the caller's settings (``None``: the
    environment's or Peer's default), its limits, :data:`TRANSFER_TIMEOUTS` and
    ``auto_reconnect``."""
    kwargs = {name: value for name, value in given.items() if value is not None}
    return {
        "server": None,
        **kwargs,
        "limits": limits,
        "timeouts": TRANSFER_TIMEOUTS,
        "auto_reconnect": True,
    }


async def _register(
    stack: contextlib.AsyncExitStack, code: Code | None, words: int, kwargs: dict[str, Any]
) -> tuple[Peer, Code]:
    """Register under a free nameplate (or the given code's); return the peer and code.

    Nameplates are short on a local broker and long on a shared one
    (:func:`~peerpy.transfer.auth.nameplate_span`); after five taken ones,
    a hundred times as many are tried.
    """
    hosts = [address.host for address in resolve_servers(kwargs["server"])]
    span = nameplate_span(hosts)
    for attempt in range(_NAMEPLATE_TRIES):
        if code is None or attempt:
            drawn = span if attempt < 5 else span * 100 + 99
            candidate = make_code(secrets.randbelow(drawn) + 1, words=words)
        else:
            candidate = code
        try:
            peer = await stack.enter_async_context(Peer(candidate.peer_id, **kwargs))
        except UnavailableIdError:
            if code is not None:
                raise TransferError(
                    f"the nameplate of {code} is in use on the broker; pick another code"
                ) from None
            continue
        return peer, candidate
    raise TransferError("found no free nameplate on the broker")


async def send_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    on_code: Callable[[Code], Any] = print,
    code: str | Code | None = None,
    words: int = 2,
    progress: Progress | None = None,
    options: TransferOptions | None = None,
    on_notice: Callable[[str], Any] | None = None,
    text: str | None = None,
    **settings: Unpack[PeerSettings],
) -> TransferStats:
    """Offer ``paths`` (files and folders) under a fresh code and send them.

    With ``text``, offer that message instead (``paths`` must be empty): the
    receiver gets it in :attr:`TransferStats.texts`, no file is written.

    ``on_code(code)`` is called once the sender is reachable; tell the code
    to the receiver.  Returns once the receiver verified every file.  Raise
    :class:`~peerpy.transfer.errors.TransferError` subclasses (wrong code,
    man in the middle, rejected, stopped, receiver gone) or peerpy's broker
    errors.  ``on_notice`` hears one-line news as it happens (default: the
    ``peerpy.transfer`` logger), such as a receiver gone silent.  Cancelling
    tells the receiver the sender stopped; the receiver keeps partial files
    to resume.  ``settings`` (:class:`PeerSettings`: broker, ICE, key, token) go to
    the Peer.
    """
    if text is not None and paths:
        raise TransferUsageError("send either paths or a text, not both")
    _offer, sources = text_manifest(text) if text is not None else build_manifest(paths)
    fixed = parse_code(code) if isinstance(code, str) else code
    options = options or TransferOptions()
    notice = on_notice or _log.warning
    # A receiver that cannot connect: the watching logger tells why.
    kwargs = _peer_kwargs(SENDER_LIMITS, **settings, logger=watching_logger(notice))

    async def body(stop: anyio.CancelScope) -> TransferStats | None:
        async with contextlib.AsyncExitStack() as stack:
            peer, chosen = await _register(stack, fixed, words, kwargs)
            on_code(chosen)
            with stop:
                return await _serve(peer, chosen, sources, progress, options, notice)
        return None

    return await _graceful(body, options)


async def _serve(
    peer: Peer,
    code: Code,
    sources: list[Source],
    progress: Progress | None,
    options: TransferOptions,
    notice: Callable[[str], Any],
) -> TransferStats:
    """Serve receivers of ``code`` until one completes (reconnections resume)."""
    lost: PeerVanishedError | None = None
    for _ in range(MAX_RECONNECTS + 1):
        conn = await _next_receiver(peer, lost, options)
        try:
            return await _session(
                conn,
                "receiver",
                notice,
                send_over(
                    conn, code, sources, progress=progress, options=options, on_notice=notice
                ),
            )
        except PeerVanishedError as exc:
            if not exc.after_auth:
                raise
            lost = exc
            notice(
                f"{exc}; waiting {options.reconnect_wait:g} s for the receiver to run "
                f"`peerpy receive {code}` again and resume"
            )
        finally:
            await _close(conn)
    assert lost is not None
    raise lost


async def _graceful(
    body: Callable[[anyio.CancelScope], Awaitable[TransferStats | None]], options: TransferOptions
) -> TransferStats:
    """Run ``body(stop)`` so that cancelling the caller stops it gracefully.

    Cancelling the caller first cancels only ``stop``, which ``body`` puts
    around its transfer inside its Peer: the session then tells the other
    side, while the Peer and its connection still run.  Everything else is
    cancelled ``stop_grace + 2`` seconds later if it has not ended by then.
    """
    stop = anyio.CancelScope()
    hard = anyio.CancelScope(shield=True)
    result: list[TransferStats | None] = []
    failure: list[Exception] = []

    async def watch() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stop.cancel()
            hard.deadline = anyio.current_time() + options.stop_grace + 2

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        with hard:
            try:
                result.append(await body(stop))
            except Exception as exc:
                failure.append(exc)
        tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
    if not result or result[0] is None:
        await anyio.lowlevel.checkpoint()  # we were cancelled: let it show
        raise anyio.get_cancelled_exc_class()()
    return result[0]


async def _session(
    conn: DataConnection,
    other: str,
    notice: Callable[[str], Any],
    session: Awaitable[TransferStats],
) -> TransferStats:
    """Await one side's ``session`` (:func:`send_over` or :func:`receive_over` on
    ``conn``): its stats, with the route and the connection's figures.

    ``notice`` hears when the path to the ``other`` side is lost and the
    connection resumes, and a stop at once (not once the Peer has closed).
    Cancelling cancels the session.
    """
    conn.on(
        "reconnecting",
        lambda error: notice(f"the path to the {other} was lost ({error}): resuming"),
    )
    conn.on("resumed", lambda: notice(f"the connection to the {other} resumed: {conn.route}"))
    try:
        stats = await session
        stats.route = conn.route
        stats.connection = await conn.stats()
        return stats
    except StoppedError as exc:
        notice(str(exc))
        raise


async def _close(conn: DataConnection) -> None:
    """Close ``conn``, even when cancelled (bounded by the connection's own timeouts)."""
    with anyio.CancelScope(shield=True):
        await conn.close()


async def _next_receiver(
    peer: Peer, lost: PeerVanishedError | None, options: TransferOptions
) -> DataConnection:
    """The next incoming transfer connection; after a loss, wait a bounded time."""
    limit = math.inf if lost is None else options.reconnect_wait
    with anyio.move_on_after(limit):
        while True:
            conn = await peer.accept()
            metadata = conn.metadata
            if (
                isinstance(metadata, dict)
                and metadata.get("protocol") == PROTOCOL
                and conn.serialization == SERIALIZATION
            ):
                return conn
            # Not a receiver of this protocol (an older peerpy, or a stranger
            # trying another serialization): its frames are never decoded here.
            _log.warning(
                "ignoring a connection from %s that is not a %s receiver", conn.peer, PROTOCOL
            )
            await _close(conn)
    assert lost is not None
    raise lost


async def receive_files(
    code: str | Code,
    *,
    output: str | os.PathLike[str] = ".",
    conflict: Conflict = "refuse",
    confirm: Confirmer = accept_all,
    progress: Progress | None = None,
    options: TransferOptions | None = None,
    on_notice: Callable[[str], Any] | None = None,
    stdout: BinaryIO | None = None,
    peer_id: str | None = None,
    **settings: Unpack[PeerSettings],
) -> TransferStats:
    """Receive what the sender of ``code`` offers into the folder ``output``.

    With ``stdout`` (a binary stream), the one offered file is written there
    instead, as it arrives (``peerpy receive --stdout``); such a transfer
    cannot resume, so a lost connection ends it rather than reconnecting.

    ``confirm(offer, resumable_bytes)`` may decline (ask the person); partial
    files from an interrupted earlier run resume.  Raise
    :class:`~peerpy.transfer.errors.NoSenderError` if nobody waits under the
    code, other :class:`~peerpy.transfer.errors.TransferError` subclasses on
    failure.  ``on_notice`` hears one-line news as it happens (default: the
    ``peerpy.transfer`` logger), such as a sender gone silent.  Cancelling
    tells the sender the receiver stopped; partial files keep their
    ``.peerpy-partial`` suffix for a resume.  ``settings`` (:class:`PeerSettings`)
    and ``peer_id`` (default: one from the broker) go to the Peer.
    """
    parsed = parse_code(code) if isinstance(code, str) else code
    target = Target(Path(output), conflict, stdout)
    options = options or TransferOptions()
    notice = on_notice or _log.warning
    kwargs = _peer_kwargs(RECEIVER_LIMITS, **settings)

    async def body(stop: anyio.CancelScope) -> TransferStats | None:
        async with Peer(peer_id, **kwargs) as peer:
            with stop:
                return await _receive(peer, parsed, target, confirm, progress, options, notice)
        return None

    return await _graceful(body, options)


async def _receive(
    peer: Peer,
    code: Code,
    target: Target,
    confirm: Confirmer,
    progress: Progress | None,
    options: TransferOptions,
    notice: Callable[[str], Any],
) -> TransferStats:
    """Receive from the sender of ``code``; reconnect and resume after a loss."""
    completed: Completed = {}
    lost: PeerVanishedError | None = None
    for attempt in range(MAX_RECONNECTS + 1):
        try:
            conn = await _connect(peer, code)
        except NoSenderError:
            if lost is not None:
                raise lost from None  # the sender is gone for good: say so
            raise
        try:
            return await _session(
                conn,
                "sender",
                notice,
                receive_over(
                    conn,
                    code,
                    target,
                    confirm=confirm if not attempt else accept_all,  # the person said yes already
                    progress=progress,
                    options=options,
                    completed=completed,
                    on_notice=notice,
                ),
            )
        except PeerVanishedError as exc:
            if not exc.after_auth or attempt == MAX_RECONNECTS or target.stdout is not None:
                raise
            lost = exc
            notice(f"{exc}; reconnecting to resume")
        finally:
            await _close(conn)
        await anyio.sleep(1)
    raise AssertionError("unreachable")  # pragma: no cover


async def _connect(peer: Peer, code: Code) -> DataConnection:
    """Open the transfer connection to the sender of ``code``."""
    try:
        return await peer.connect(
            code.peer_id,
            serialization=SERIALIZATION,
            reliable=True,
            metadata={"protocol": PROTOCOL},
        )
    except PeerUnavailableError:
        raise NoSenderError(
            f"no sender waits under code {code}: check the code, and that the "
            "sender still runs and uses the same broker"
        ) from None
