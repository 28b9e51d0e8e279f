"""The aiortc backend: pure-Python SCTP and DTLS (aiortc on aioice), data and media.

Everything peerpy does specially on aiortc is under ``peerpy/backends/``:

- :mod:`peerpy.backends._aioice`: the hooks applying a
  :class:`~peerpy.network.NetworkPolicy` and ``Timeouts.remote_gone`` to one
  connection's ICE (:func:`create_peer_connection`, :func:`watch_remote`,
  :func:`ice_sockets`, re-exported here);
- :mod:`peerpy.backends._sctp`: the cheaper SCTP send path given to each data
  channel's transport (:meth:`AiortcBackend.tune_channel`);
- :mod:`peerpy.backends._aiortc_stats`: what aiortc's stats lack (a data
  channel's bytes, the selected pair's round-trip time, frame counts), counted
  or read by peerpy, and the report in the W3C's form
  (:meth:`AiortcBackend.stats_report`);
- here: :data:`BACKEND`, the :class:`~peerpy.backends.Backend` object, which
  also reads the selected candidate pair (:meth:`~AiortcBackend.route_of`), the
  candidates gathered (:meth:`~AiortcBackend.ice_summary`) and the SCTP queues
  (:meth:`~AiortcBackend.unacknowledged`) from aiortc's and aioice's private
  attributes; those return ``None``/``False`` rather than fail if they change.

aiortc puts every local candidate in the SDP and filters remote ones through
the hooks, so its SDP passes through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from ..diagnosis import IceSummary
from ..exceptions import WebRTCError
from ..network import address_allowed, remote_networks
from ..route import Route
from . import _aioice, _aiortc_stats, _channel_stats, _sctp
from ._aioice import SUPPORTED_BACKENDS, create_peer_connection, ice_sockets, watch_remote

if TYPE_CHECKING:
    from ..network import NetworkPolicy
    from ..stats import Report

__all__ = [
    "BACKEND",
    "SUPPORTED_BACKENDS",
    "AiortcBackend",
    "create_peer_connection",
    "ice_sockets",
    "route_of",
    "watch_remote",
]


_log = logging.getLogger("peerpy.backends")


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice connections of ``pc``'s ICE transports (one when bundled)."""
    transports = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None:
            transports.append(dtls.transport)
    if pc.sctp is not None:
        transports.append(pc.sctp.transport.transport)
    connections = (getattr(t.iceGatherer, "_connection", None) for t in transports)
    return list(dict.fromkeys(c for c in connections if c is not None))


def route_of(pc: RTCPeerConnection) -> Route | None:
    """The selected pair of ``pc``'s first ICE transport; ``None`` before one is selected."""
    for connection in _ice_connections(pc):
        nominated = getattr(connection, "_nominated", None)
        pair = nominated.get(1) if isinstance(nominated, dict) else None
        if pair is None:
            continue
        local = pair.local_candidate
        remote = pair.remote_candidate
        relay_protocol = relay_server = None
        if local.type == "relay":
            relay_protocol = getattr(connection, "turn_transport", None)
            server = getattr(connection, "turn_server", None)
            if isinstance(server, tuple) and len(server) == 2:
                relay_server = (str(server[0]), int(server[1]))
        return Route(
            local_type=str(local.type),
            remote_type=str(remote.type),
            local_address=(str(local.host), int(local.port)),
            remote_address=(str(remote.host), int(remote.port)),
            protocol=str(local.transport).lower(),
            relay_protocol=relay_protocol,
            relay_server=relay_server,
        )
    return None


class AiortcBackend:
    """The :class:`~peerpy.backends.Backend` of aiortc (use :data:`BACKEND`)."""

    name: Final[Literal["aiortc"]] = "aiortc"

    create_peer_connection = staticmethod(create_peer_connection)

    def description(self, sdp: str, type: str) -> RTCSessionDescription:
        return RTCSessionDescription(sdp=sdp, type=type)

    def candidate_from_line(self, line: str) -> RTCIceCandidate:
        return candidate_from_sdp(line)

    def local_sdp(self, sdp: str, policy: NetworkPolicy) -> str:
        return sdp  # aioice gathered only where the policy allows

    def remote_sdp(self, sdp: str, policy: NetworkPolicy) -> str:
        return sdp  # the hooks drop remote candidates outside remote_networks

    def remote_allowed(self, host: str, policy: NetworkPolicy) -> bool:
        return address_allowed(host, remote_networks(policy))

    watch_remote = staticmethod(watch_remote)
    route_of = staticmethod(route_of)

    def route_undisclosed(self, pc: RTCPeerConnection, policy: NetworkPolicy) -> bool:
        return False  # aioice always knows the remote's address

    def route_refused(self, pc: RTCPeerConnection, policy: NetworkPolicy) -> str | None:
        return None  # the hooks drop every packet from outside remote_networks

    def ice_summary(self, pc: RTCPeerConnection) -> IceSummary | None:
        for connection in _ice_connections(pc):
            return IceSummary.of(
                getattr(connection, "local_candidates", []),
                getattr(connection, "remote_candidates", []),
                stun=getattr(connection, "stun_server", None) is not None,
                turn=getattr(connection, "turn_server", None) is not None,
            )
        return None

    def send_high_water(self, requested: int) -> int:
        return requested  # aiortc's channel queue has no limit of its own

    def tune_channel(self, channel: RTCDataChannel) -> None:
        # A cheaper SCTP send path on the aiortc versions it was written for.
        _sctp.tune(channel.transport)
        _channel_stats.count_channel(channel)  # aiortc reports no data-channel stats

    def add_track(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        _aiortc_stats.count_sender(pc.addTrack(track))

    def receive_track(self, track: MediaStreamTrack, max_frames: int) -> MediaStreamTrack:
        if not _aiortc_stats.bound_frames(track, max_frames):  # pragma: no cover
            _log.debug("cannot bound the frame queue of %r (another aiortc version)", track)
        return track

    async def stats_report(self, pc: RTCPeerConnection, channel: RTCDataChannel | None) -> Report:
        timed = (getattr(c, _aioice.RTT, None) for c in _ice_connections(pc))
        rtt = next((value for value in timed if value is not None), None)
        return await _aiortc_stats.stats_report(pc, channel, rtt)

    async def raw_stats(self, pc: RTCPeerConnection) -> Mapping[str, Any]:
        return await pc.getStats()

    def remote_certificate(self, pc: RTCPeerConnection) -> bytes | None:
        from cryptography.hazmat.primitives.serialization import Encoding

        ssl = getattr(getattr(pc.sctp, "transport", None), "_ssl", None)  # pyOpenSSL, private
        cert = None if ssl is None else ssl.get_peer_certificate(as_cryptography=True)
        return None if cert is None else cert.public_bytes(Encoding.DER)

    def unacknowledged(self, pc: RTCPeerConnection) -> bool:
        sctp = pc.sctp
        return bool(
            getattr(sctp, "_data_channel_queue", None) or getattr(sctp, "_outbound_queue", None)
        )

    #: aioice's connection never restarts (aiortc#211): resumption makes a new peer connection.
    restarts_ice: Final = False

    def restart_ice(self, pc: RTCPeerConnection) -> None:
        raise WebRTCError("aiortc cannot restart ICE (aiortc#211)")

    def ice_connected(self, pc: RTCPeerConnection) -> bool:
        raise WebRTCError("aiortc cannot restart ICE (aiortc#211)")


#: The aiortc backend.
BACKEND: Final = AiortcBackend()
