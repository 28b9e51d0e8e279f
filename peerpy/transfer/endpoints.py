"""Code-based sending and receiving: the Peers around a transfer session.

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
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from ..dataconnection import DataConnection
from ..exceptions import PeerUnavailableError, UnavailableIdError
from ..peer import Peer
from .auth import Code, make_code, parse_code
from .errors import NoSenderError, PeerVanishedError, TransferError
from .files import Conflict, Target, build_manifest
from .protocol import PROTOCOL
from .session import (
    Completed,
    Confirmer,
    Progress,
    TransferOptions,
    TransferStats,
    _yes,
    receive_over,
    send_over,
)

__all__ = ["MAX_RECONNECTS", "SERIALIZATION", "receive_files", "send_files"]

#: Transfers use MsgPack: PeerJS-compatible, reliable (ordered), binary-clean.
SERIALIZATION = "MsgPack"
#: Nameplates tried before giving up on finding a free one.
_NAMEPLATE_TRIES = 20
#: Times a transfer reconnects (same code, re-authenticated) after a lost
#: connection, resuming where it stopped.
MAX_RECONNECTS = 5
_log = logging.getLogger("peerpy.transfer")


def _peer_kwargs(
    server: str | None, ice_servers: Sequence[str] | None, ice_addresses: Sequence[str] | None
) -> dict[str, Any]:
    return {"server": server, "ice_servers": ice_servers, "ice_addresses": ice_addresses}


async def _register(
    stack: contextlib.AsyncExitStack, code: Code | None, words: int, kwargs: dict[str, Any]
) -> tuple[Peer, Code]:
    """Register under a free nameplate (or the given code's); return the peer and code."""
    for attempt in range(_NAMEPLATE_TRIES):
        if code is None or attempt:
            span = 999 if attempt < 5 else 99_999
            candidate = make_code(secrets.randbelow(span) + 1, words=words)
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
    server: str | None = None,
    ice_servers: Sequence[str] | None = None,
    ice_addresses: Sequence[str] | None = None,
) -> TransferStats:
    """Offer ``paths`` (files and folders) under a fresh code and send them.

    ``on_code(code)`` is called once the sender is reachable; tell the code
    to the receiver.  Returns once the receiver verified every file.  Raise
    :class:`~peerpy.transfer.errors.TransferError` subclasses (wrong code,
    man in the middle, rejected, receiver gone) or peerpy's broker errors.
    Cancelling stops sending; the receiver keeps partial files to resume.
    """
    _offer, sources = build_manifest(paths)
    fixed = parse_code(code) if isinstance(code, str) else code
    kwargs = _peer_kwargs(server, ice_servers, ice_addresses)
    async with contextlib.AsyncExitStack() as stack:
        peer, chosen = await _register(stack, fixed, words, kwargs)
        on_code(chosen)
        lost: PeerVanishedError | None = None
        for _ in range(MAX_RECONNECTS + 1):
            conn = await _next_receiver(peer, lost, options or TransferOptions())
            try:
                stats = await send_over(conn, chosen, sources, progress=progress, options=options)
                stats.route = conn.route
                return stats
            except PeerVanishedError as exc:
                if not exc.after_auth:
                    raise
                lost = exc
                _log.warning("connection lost (%s); waiting for the receiver to resume", exc)
            finally:
                await conn.close(flush=True)
        assert lost is not None
        raise lost


async def _next_receiver(
    peer: Peer, lost: PeerVanishedError | None, options: TransferOptions
) -> DataConnection:
    """The next incoming transfer connection; after a loss, wait a bounded time."""
    limit = math.inf if lost is None else options.idle_timeout * 2
    with anyio.move_on_after(limit):
        while True:
            conn = await peer.accept()
            if isinstance(conn.metadata, dict) and conn.metadata.get("protocol") == PROTOCOL:
                return conn
            await conn.close()  # not a transfer receiver: ignore it
    assert lost is not None
    raise lost


async def receive_files(
    code: str | Code,
    *,
    output: str | os.PathLike[str] = ".",
    conflict: Conflict = "refuse",
    confirm: Confirmer = _yes,
    progress: Progress | None = None,
    options: TransferOptions | None = None,
    server: str | None = None,
    ice_servers: Sequence[str] | None = None,
    ice_addresses: Sequence[str] | None = None,
) -> TransferStats:
    """Receive what the sender of ``code`` offers into the folder ``output``.

    ``confirm(offer, resumable_bytes)`` may decline (ask the person); partial
    files from an interrupted earlier run resume.  Raise
    :class:`~peerpy.transfer.errors.NoSenderError` if nobody waits under the
    code, other :class:`~peerpy.transfer.errors.TransferError` subclasses on
    failure.  Cancelling stops; partial files keep their ``.peerpy-partial``
    suffix.
    """
    parsed = parse_code(code) if isinstance(code, str) else code
    target = Target(Path(output), conflict)
    completed: Completed = {}
    async with Peer(**_peer_kwargs(server, ice_servers, ice_addresses)) as peer:
        lost: PeerVanishedError | None = None
        for attempt in range(MAX_RECONNECTS + 1):
            try:
                conn = await _connect(peer, parsed)
            except NoSenderError:
                if lost is not None:
                    raise lost from None  # the sender is gone for good: say so
                raise
            try:
                stats = await receive_over(
                    conn,
                    parsed,
                    target,
                    confirm=confirm if not attempt else _yes,  # the person said yes already
                    progress=progress,
                    options=options,
                    completed=completed,
                )
                stats.route = conn.route
                return stats
            except PeerVanishedError as exc:
                if not exc.after_auth or attempt == MAX_RECONNECTS:
                    raise
                lost = exc
                _log.warning("connection lost (%s); reconnecting to resume", exc)
            finally:
                with anyio.CancelScope(shield=True):
                    await conn.close(flush=True)
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
