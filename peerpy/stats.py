"""A connection's numbers: what ``await conn.stats()`` returns.

:class:`ConnectionStats` holds the figures users look for in a W3C
``RTCStatsReport`` (the report of ``getStats()``, which PeerJS users reach
through ``peerConnection.getStats()``), named after the W3C members in
snake_case; per audio or video track, a :class:`TrackStats`. A figure the
backend does not provide is ``None`` (the table in docs/dataconnection.md
and docs/media.md says which). For everything else, ``await conn.raw_stats()``
gives the backend's own full report.

>>> stats = await conn.stats()                                   # doctest: +SKIP
>>> stats.round_trip_time, stats.bytes_sent, str(stats.route)    # doctest: +SKIP
(0.0004, 1048576, 'direct, 127.0.0.1:40000 ↔ 127.0.0.1:50000')

This module is pure: :meth:`ConnectionStats.from_report` maps a report in the
W3C's JSON form (a mapping of stats ids to dicts of camelCase members, as
``JSON.stringify`` gives it in a browser) to the value object. Each backend
makes that form of its own report (``Backend.stats_report`` in
:mod:`peerpy.backends.aiortc` and :mod:`peerpy.backends.wrtc`); the mapping
is tested with reports recorded from both.

Which member each figure comes from:

========================== ===========================================================
figure                     W3C source
========================== ===========================================================
bytes_sent/received        data connection: the ``data-channel`` (payload bytes;
                           ``DataConnection.stats()`` puts its own count of the
                           application's payload there, see :func:`payload_size`);
                           call: the ``transport`` (every byte of the connection)
packets_sent/received      the ``transport`` (else the selected ``candidate-pair``)
packets_lost               ``packetsLost`` of the ``inbound-rtp`` (lost on the way to
                           us) and ``remote-inbound-rtp`` (lost on the way to the
                           remote, as its RTCP says) streams; ``None`` without RTP
round_trip_time            the selected ``candidate-pair``'s ``currentRoundTripTime``,
                           else the mean ``roundTripTime`` of ``remote-inbound-rtp``
available_outgoing_bitrate the selected ``candidate-pair``'s
tracks                     one per ``outbound-rtp`` (a track we send; ``jitter`` and
                           ``packets_lost`` as the remote reports them) and per
                           ``inbound-rtp`` (a track we receive)
========================== ===========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import attrs

from .route import Route

__all__ = ["ConnectionStats", "Report", "TrackStats", "payload_size"]

#: A stats report in the W3C's JSON form: stats id -> ``{"type": ..., camelCase members}``.
Report = Mapping[str, Mapping[str, Any]]

Direction = Literal["outbound", "inbound"]


def payload_size(message: bytes | str) -> int:
    """The bytes ``RTCDataChannelStats`` counts for one message: its length, a string's UTF-8."""
    if isinstance(message, bytes) or message.isascii():
        return len(message)
    return len(message.encode())


def _video_only(track: TrackStats, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and track.kind != "video":
        raise ValueError(f"{attribute.name} is a video figure; this track's kind is {track.kind!r}")


@attrs.frozen
class TrackStats:
    """The numbers of one audio or video track of a call, sent or received.

    The ``frames_*`` members are ``None`` for audio (as in the W3C stats); a
    ``TrackStats`` of an audio track with one set is refused (``ValueError``).
    """

    #: ``"audio"`` or ``"video"``.
    kind: str
    #: ``"outbound"``: a track we send; ``"inbound"``: a track we receive.
    direction: Direction
    #: The track's id (``MediaStreamTrack.id``), when the report names it.
    track_id: str | None = None
    #: Frames encoded (``outbound``).
    frames_encoded: int | None = attrs.field(default=None, validator=_video_only)
    #: Frames decoded (``inbound``).
    frames_decoded: int | None = attrs.field(default=None, validator=_video_only)
    #: Frames dropped (``inbound``): on aiortc, frames the application did not
    #: read before :attr:`~peerpy.MediaConnection.max_buffered_frames` newer ones came.
    frames_dropped: int | None = attrs.field(default=None, validator=_video_only)
    #: Frames encoded (``outbound``) or decoded (``inbound``) in the last second.
    frames_per_second: float | None = attrs.field(default=None, validator=_video_only)
    #: Interarrival jitter in seconds (``outbound``: as the remote measured it).
    jitter: float | None = None
    #: RTP packets lost (``outbound``: as the remote reported it).
    packets_lost: int | None = None


@attrs.frozen
class ConnectionStats:
    """The numbers of a data or media connection at one moment (see the module docstring)."""

    #: Bytes sent: a data connection's payload bytes (the application's
    #: messages, resumption's envelopes and acknowledgements excluded), a
    #: call's transport bytes.
    bytes_sent: int | None = None
    #: Bytes received, counted as :attr:`bytes_sent`.
    bytes_received: int | None = None
    #: Packets the connection's transport sent (ICE, DTLS, SCTP, RTP, RTCP).
    packets_sent: int | None = None
    #: Packets the connection's transport received.
    packets_received: int | None = None
    #: RTP packets lost, both directions (``None`` on a data connection: SCTP
    #: retransmits what is lost, and no W3C stats count it).
    packets_lost: int | None = None
    #: Seconds a packet takes there and back on the selected candidate pair.
    round_trip_time: float | None = None
    #: Bits per second the congestion control estimates can be sent.
    available_outgoing_bitrate: float | None = None
    #: The candidate pair in use (see :mod:`peerpy.route`).
    route: Route | None = None
    #: One per audio or video track of a call, sent ones first.
    tracks: tuple[TrackStats, ...] = ()

    @classmethod
    def from_report(
        cls, report: Report, *, route: Route | None = None, data: bool = False
    ) -> ConnectionStats:
        """The figures of ``report`` (the W3C JSON form); ``data``: a data connection's.

        Members that are missing or not numbers give ``None``; no report raises.
        """
        transports = list(_of_type(report, "transport"))
        pair = _selected_pair(report, transports)
        counted = list(_of_type(report, "data-channel")) if data else transports
        lost = [
            *_of_type(report, "inbound-rtp"),
            *_of_type(report, "remote-inbound-rtp"),
        ]
        rtt = _number(pair.get("currentRoundTripTime"))
        if rtt is None:
            rtts = [_number(s.get("roundTripTime")) for s in _of_type(report, "remote-inbound-rtp")]
            known = [value for value in rtts if value is not None]
            rtt = sum(known) / len(known) if known else None
        return cls(
            bytes_sent=_total(counted, "bytesSent"),
            bytes_received=_total(counted, "bytesReceived"),
            packets_sent=_either(_total(transports, "packetsSent"), pair.get("packetsSent")),
            packets_received=_either(
                _total(transports, "packetsReceived"), pair.get("packetsReceived")
            ),
            packets_lost=_total(lost, "packetsLost", signed=True),
            round_trip_time=rtt,
            available_outgoing_bitrate=_number(pair.get("availableOutgoingBitrate")),
            route=route,
            tracks=tuple(_tracks(report)),
        )

    def summary(self) -> str:
        """One line: round-trip time, loss and route (what ``peerpy send -v`` prints)."""
        rtt = "n/a" if self.round_trip_time is None else f"{self.round_trip_time * 1000:.1f} ms"
        loss = "n/a" if self.packets_lost is None else f"{self.packets_lost} packets"
        route = "n/a" if self.route is None else str(self.route)
        return f"rtt {rtt}, loss {loss}, route {route}"


def _of_type(report: Report, type: str) -> Iterator[Mapping[str, Any]]:
    return (stats for stats in report.values() if stats.get("type") == type)


def _selected_pair(report: Report, transports: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The transport's selected candidate pair, else a nominated, succeeded one; else ``{}``."""
    for transport in transports:
        pair = report.get(str(transport.get("selectedCandidatePairId")))
        if pair is not None:
            return pair
    for pair in _of_type(report, "candidate-pair"):
        if pair.get("nominated") and pair.get("state") == "succeeded":
            return pair
    return {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: object, *, signed: bool = False) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if signed or value >= 0 else None


def _either(total: int | None, fallback: object) -> int | None:
    return total if total is not None else _count(fallback)


def _total(
    entries: Iterable[Mapping[str, Any]], member: str, *, signed: bool = False
) -> int | None:
    """The sum of ``member`` over ``entries``; ``None`` if no entry has it."""
    values = [_count(entry.get(member), signed=signed) for entry in entries]
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def _tracks(report: Report) -> Iterator[TrackStats]:
    """A :class:`TrackStats` per ``outbound-rtp`` stream, then per ``inbound-rtp`` one."""
    # What the remote reports of each stream we send: by localId, else by SSRC.
    remote = list(_of_type(report, "remote-inbound-rtp"))
    by_local = {stats.get("localId"): stats for stats in remote if stats.get("localId")}
    by_ssrc = {stats.get("ssrc"): stats for stats in remote}
    for stats in _of_type(report, "outbound-rtp"):
        heard = by_local.get(stats.get("id")) or by_ssrc.get(stats.get("ssrc")) or {}
        source = report.get(str(stats.get("mediaSourceId")), {})
        yield _track(stats, "outbound", source=source, heard=heard)
    for stats in _of_type(report, "inbound-rtp"):
        yield _track(stats, "inbound", source=stats, heard=stats)


#: The frame counters (W3C members) each direction's RTP stream has, for video.
_FRAMES: dict[Direction, frozenset[str]] = {
    "outbound": frozenset({"framesEncoded"}),
    "inbound": frozenset({"framesDecoded", "framesDropped"}),
}


def _track(
    stats: Mapping[str, Any],
    direction: Direction,
    *,
    source: Mapping[str, Any],
    heard: Mapping[str, Any],
) -> TrackStats:
    """The figures of one RTP stream ``stats``.

    ``source`` names its track; ``heard`` has its jitter and loss (for a track
    we send, what the remote reports of it).
    """
    video = stats.get("kind") == "video"
    counted = _FRAMES[direction] if video else frozenset()

    def frames(member: str) -> int | None:
        return _count(stats.get(member)) if member in counted else None

    return TrackStats(
        kind=str(stats.get("kind")),
        direction=direction,
        track_id=_text(source.get("trackIdentifier")),
        frames_encoded=frames("framesEncoded"),
        frames_decoded=frames("framesDecoded"),
        frames_dropped=frames("framesDropped"),
        frames_per_second=_number(stats.get("framesPerSecond")) if video else None,
        jitter=_number(heard.get("jitter")),
        packets_lost=_count(heard.get("packetsLost"), signed=True),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
