"""Outgoing connections: from ``connect()`` or ``call()`` to an open connection.

:class:`Outgoing` builds the connection a :class:`~peerpy.peer.Peer` asks
for on a new peer connection, registers it (so the broker's ANSWER and
candidates find it) and drives it until it is open, within a deadline
(``timeout``, else ``Timeouts.negotiation``).  A connection that fails or
times out, or whose caller is cancelled, is closed before the error reaches
the caller.  Before any of that, :meth:`Outgoing.check` refuses what cannot
work: a destroyed or disconnected peer, our own id, metadata that is not JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiortc import MediaStreamTrack
from peerpy_protocol.ids import connection_id, validate_id
from peerpy_protocol.messages import RelayType, serialize_relay

from .connection import Connection, ConnectionArgs, SdpTransform
from .dataconnection import DataConnection
from .exceptions import DisconnectedError, EncodeError, UsageError
from .mediaconnection import MediaConnection, check_tracks
from .owner import Host
from .rooms.mesh import resumable
from .serialization import SerializerFactory, create_serializer

__all__ = ["Outgoing"]


class Outgoing:
    """The outgoing side of one peer: ``connect()`` and ``call()`` behind the API checks."""

    def __init__(
        self, host: Host, serializers: Mapping[str, SerializerFactory], logger: logging.Logger
    ) -> None:
        self._host = host
        self._serializers = serializers
        self._log = logger

    def check(self, peer: str, metadata: Any) -> None:
        """Raise :class:`UsageError` (or a subclass) if connecting to ``peer`` cannot work.

        :class:`DisconnectedError` if the peer is destroyed or off the broker;
        :class:`UsageError` for our own id (PeerJS would wait for an answer that
        never comes); :class:`EncodeError` if ``metadata`` cannot travel as JSON.
        """
        host = self._host
        if host.destroyed:
            raise DisconnectedError("The peer is destroyed.")
        if not host.open:
            raise DisconnectedError("Cannot connect to new Peer after disconnecting from server.")
        validate_id(peer)
        if peer == host.id:
            raise UsageError(
                f"cannot connect to yourself: {peer!r} is this peer's own id; "
                "a connection needs two peers (two Peer objects, each with its own id)"
            )
        try:
            serialize_relay(RelayType.OFFER, None, peer, {"metadata": metadata})
        except (TypeError, ValueError, RecursionError) as exc:
            raise EncodeError(
                f"metadata must be JSON (dict, list, str, int, float, bool or None): {exc}"
            ) from None

    def _args(self, peer: str, cid: str, metadata: Any) -> ConnectionArgs:
        """What a connection we open to ``peer`` is made with, on a new peer connection."""
        host = self._host
        return ConnectionArgs(
            owner=host,
            pc=host._new_pc(),
            peer=peer,
            connection_id=cid,
            metadata=metadata,
            originator=True,
            logger=self._log,
        )

    async def connect(
        self,
        peer: str,
        *,
        label: str | None,
        metadata: Any,
        serialization: str,
        reliable: bool,
        timeout: float | None,
        sdp_transform: SdpTransform | None,
    ) -> DataConnection:
        """Open a data connection (see :meth:`peerpy.Peer.connect`).

        The serializer is made first, so an unknown ``serialization`` fails
        before any peer connection exists.  Cancelling closes the half-made
        connection.
        """
        self.check(peer, metadata)
        host = self._host
        serializer = create_serializer(
            serialization, limits=host.limits.decoding, custom=self._serializers
        )
        cid = connection_id("data")
        conn = DataConnection(
            self._args(peer, cid, metadata),
            label=cid if label is None else label,
            serializer=serializer,
            reliable=reliable or serializer.reliable_required,
            resumable=resumable(metadata),
        )
        limit = self._start(conn, sdp_transform, timeout)
        await conn._open_within(
            limit,
            conn._start_as_caller,
            lambda: f"connection to {conn.peer} not open after {limit:g} s",
        )
        return conn

    async def call(
        self,
        peer: str,
        tracks: Iterable[MediaStreamTrack] | None,
        *,
        metadata: Any,
        receive: Sequence[str],
        timeout: float | None,
        sdp_transform: SdpTransform | None,
    ) -> MediaConnection:
        """Call ``peer`` (see :meth:`peerpy.Peer.call`).

        Cancelling closes the half-made call.
        """
        self.check(peer, metadata)
        local = check_tracks(tracks)
        if any(kind not in ("audio", "video") for kind in receive) or isinstance(receive, str):
            raise UsageError(f"receive takes kinds 'audio'/'video', got {receive!r}")
        if not local and not receive:
            raise UsageError("a call needs tracks to send or kinds to receive")
        call = MediaConnection(
            self._args(peer, connection_id("media"), metadata),
            tracks=local,
            receive=receive,
            resumable=resumable(metadata),
        )
        await call._dial(self._start(call, sdp_transform, timeout))
        return call

    def _start(
        self, conn: Connection, sdp_transform: SdpTransform | None, timeout: float | None
    ) -> float:
        """Register ``conn`` (so the broker's ANSWER finds it); return its deadline in seconds."""
        conn.sdp_transform = sdp_transform
        self._host._register(conn)
        return self._host.timeouts.negotiation if timeout is None else timeout
