"""The aiortc backend's statistics: what aiortc's report lacks, and the report in W3C form.

aiortc's ``getStats()`` reports the RTP streams of a peer connection's
senders and receivers (``outbound-rtp``, ``inbound-rtp``,
``remote-inbound-rtp``, ``remote-outbound-rtp``) and their DTLS
``transport``; jitter is in RTP clock units. It reports no data channel, no
candidate pair and no frame counts. :func:`stats_report` gives the report in
the W3C's JSON form (:data:`peerpy.stats.Report`), completed with:

- ``data-channel``: the payload bytes and messages of a data connection's
  channel, counted by peerpy (:mod:`peerpy.backends._channel_stats`);
- ``transport``: the SCTP association's DTLS transport, which a data
  connection (no RTP sender or receiver) otherwise lacks;
- ``candidate-pair``: the selected pair, with a ``currentRoundTripTime``
  aioice does not measure: the round-trip time of the latest ICE consent
  check (RFC 7675; peerpy times those it sends about every second when
  ``Timeouts.remote_gone`` is set, the default: see
  :mod:`peerpy.backends._aioice`), else SCTP's smoothed round-trip time
  (RFC 4960 §6.3.1), which SCTP measures over the same pair as data is
  acknowledged (every PeerJS connection has an SCTP association: a call's
  is its auxiliary channel);
- ``framesEncoded`` (counted per sender by :func:`count_sender`),
  ``framesDecoded`` and ``framesDropped`` (counted by the bounded frame queue
  :class:`LatestFrames` that :func:`bound_frames` gives a remote track),
  ``framesPerSecond`` (those of the last second);
- ``jitter`` in seconds (divided by the negotiated codec's clock rate) and
  ``localId`` linking each ``remote-inbound-rtp`` to its ``outbound-rtp``.

These read aiortc's private attributes (``_next_encoded_frame``, a track's
``_queue``, ``sctp._srtt``, ``_get_stats``, a transceiver's ``_codecs``);
each is looked up with a default, so a later aiortc leaves the figure out
(``None`` in :class:`~peerpy.stats.ConnectionStats`) instead of failing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from ._channel_stats import channel_entry

if TYPE_CHECKING:
    from aiortc import (
        MediaStreamTrack,
        RTCDataChannel,
        RTCPeerConnection,
        RTCRtpSender,
        RTCRtpTransceiver,
    )


__all__ = ["LatestFrames", "bound_frames", "count_sender", "stats_report"]

#: Frame times kept for ``framesPerSecond`` (more than a second of 60 fps video).
_RECENT: Final = 128
_COUNTS: Final = "_peerpy_counts"
_PAIR_ID: Final = "candidate-pair_selected"


class _Frames:
    """Frames counted, and when the latest came (for a per-second rate)."""

    def __init__(self) -> None:
        self.count = 0
        self._times: deque[float] = deque(maxlen=_RECENT)

    def add(self) -> None:
        self.count += 1
        self._times.append(time.monotonic())

    def per_second(self) -> float:
        since = time.monotonic() - 1.0
        return float(sum(1 for moment in self._times if moment > since))


class LatestFrames(asyncio.Queue[Any]):
    """aiortc's frame queue of a remote track, bounded: when full, the oldest frame is dropped.

    It counts the frames decoded (each one the decoder puts) and dropped.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self._limit = maxsize
        self.dropped = 0
        self.decoded = _Frames()

    def put_nowait(self, item: Any) -> None:
        if item is not None:  # None: the track ended
            self.decoded.add()
        while self.qsize() >= self._limit:
            self.get_nowait()
            self.dropped += 1
        super().put_nowait(item)

    async def put(self, item: Any) -> None:
        self.put_nowait(item)


def bound_frames(track: MediaStreamTrack, limit: int) -> bool:
    """Give a remote track a :class:`LatestFrames` queue of ``limit``; whether it could."""
    queue = getattr(track, "_queue", None)
    if type(queue) is not asyncio.Queue or not queue.empty():
        return False  # another aiortc version
    track._queue = LatestFrames(limit)  # type: ignore[attr-defined]
    return True


def count_sender(sender: RTCRtpSender) -> None:
    """Count the frames ``sender`` encodes from now on (aiortc's sender loop asks for each)."""
    encode: Callable[[Any], Awaitable[Any]] | None = getattr(sender, "_next_encoded_frame", None)
    if encode is None or getattr(sender, _COUNTS, None) is not None:
        return
    frames = _Frames()

    async def counted(codec: Any) -> Any:
        frame = await encode(codec)
        if frame is not None:  # None: the sender is disabled, or the encoder holds it
            frames.add()
        return frame

    setattr(sender, "_next_encoded_frame", counted)  # noqa: B010 - per object
    setattr(sender, _COUNTS, frames)


# --- The report ----------------------------------------------------------------------


def _entry(stats: Any, clock_rate: int | None) -> dict[str, Any]:
    """One aiortc stats dataclass in the W3C's JSON form."""
    entry: dict[str, Any] = dataclasses.asdict(stats)
    timestamp = entry.get("timestamp")
    if isinstance(timestamp, datetime.datetime):
        entry["timestamp"] = timestamp.timestamp() * 1000  # W3C: milliseconds
    if "jitter" in entry:  # RTP clock units in aiortc, seconds in the W3C's
        jitter = entry["jitter"]
        entry["jitter"] = jitter / clock_rate if clock_rate and jitter is not None else None
    if isinstance(entry.get("fractionLost"), int):  # RTCP's 8-bit fixed point
        entry["fractionLost"] /= 256
    return entry


def _clock_rate(transceiver: RTCRtpTransceiver) -> int | None:
    codecs = getattr(transceiver, "_codecs", None)
    rate = getattr(codecs[0], "clockRate", None) if codecs else None
    return rate if isinstance(rate, int) and rate > 0 else None


async def _rtp_entries(transceiver: RTCRtpTransceiver, report: dict[str, dict[str, Any]]) -> None:
    """Add ``transceiver``'s RTP streams and transport to ``report``, with frame counts."""
    clock = _clock_rate(transceiver)
    sender, receiver = transceiver.sender, transceiver.receiver
    sent = [_entry(stats, clock) for stats in (await sender.getStats()).values()]
    outbound = next((entry for entry in sent if entry["type"] == "outbound-rtp"), None)
    if outbound is not None and sender.track is None and not outbound.get("packetsSent"):
        sent.remove(outbound)  # a receive-only transceiver's sender
        outbound = None
    if outbound is not None:
        frames = getattr(sender, _COUNTS, None)
        if isinstance(frames, _Frames) and outbound.get("kind") == "video":
            outbound.update(framesEncoded=frames.count, framesPerSecond=frames.per_second())
        if sender.track is not None:
            source = f"media-source_{outbound['id']}"
            sent.append(
                {
                    "type": "media-source",
                    "id": source,
                    "kind": sender.track.kind,
                    "trackIdentifier": sender.track.id,
                }
            )
            outbound["mediaSourceId"] = source
        for entry in sent:
            if entry["type"] == "remote-inbound-rtp":
                entry["localId"] = outbound["id"]
    for entry in sent:
        report[entry["id"]] = entry
    for stats in (await receiver.getStats()).values():
        entry = _entry(stats, clock)
        if entry["type"] == "inbound-rtp":
            entry["trackIdentifier"] = receiver.track.id
            queue = getattr(receiver.track, "_queue", None)
            if isinstance(queue, LatestFrames) and entry.get("kind") == "video":
                entry.update(
                    framesDecoded=queue.decoded.count,
                    framesDropped=queue.dropped,
                    framesPerSecond=queue.decoded.per_second(),
                )
        report[entry["id"]] = entry


async def stats_report(
    pc: RTCPeerConnection, channel: RTCDataChannel | None, ice_rtt: float | None
) -> dict[str, dict[str, Any]]:
    """``pc``'s stats in the W3C's JSON form (see the module docstring).

    ``ice_rtt``: the round-trip time of the latest ICE consent check peerpy
    timed (``None``: none). Cancelling stops collecting them.
    """
    report: dict[str, dict[str, Any]] = {}
    for transceiver in pc.getTransceivers():
        await _rtp_entries(transceiver, report)
    sctp = pc.sctp
    dtls_stats = getattr(getattr(sctp, "transport", None), "_get_stats", None)
    if dtls_stats is not None:
        for stats in dtls_stats().values():
            report.setdefault(stats.id, _entry(stats, None))
    srtt = getattr(sctp, "_srtt", None)
    rtt = ice_rtt if ice_rtt is not None else srtt if isinstance(srtt, float) else None
    if rtt is not None:
        report[_PAIR_ID] = {
            "type": "candidate-pair",
            "id": _PAIR_ID,
            "state": "succeeded",
            "nominated": True,
            "currentRoundTripTime": rtt,
        }
        for entry in report.values():
            if entry["type"] == "transport":
                entry["selectedCandidatePairId"] = _PAIR_ID
    counted = channel_entry(channel)
    if counted is not None and not any(e["type"] == "data-channel" for e in report.values()):
        report[counted["id"]] = counted
    return report
