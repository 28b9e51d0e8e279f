"""ConnectionStats.from_report (peerpy.stats): W3C stats reports mapped to the value object.

The reports in ``stats_reports/`` were recorded from real connections on
loopback, in the W3C JSON form each backend's ``stats_report`` gives
(certificates left out): ``*_data``: a data connection whose caller sent 100
messages of 10,000 bytes (``serialization="raw"``) and received ``"héllo"``
(6 UTF-8 bytes); ``aiortc_call_*``: a peerpy call on aiortc, a tone and a
test pattern each way, the caller reading no audio; ``wrtc_call_*``: two
libwebrtc peer connections (``webrtc.aiortc``), the caller sending a tone and
a pattern, the callee reading the video.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from peerpy.route import Route
from peerpy.stats import ConnectionStats, TrackStats

SAMPLES = Path(__file__).parent / "stats_reports"
ROUTE = Route("host", "host", ("127.0.0.1", 40000), ("127.0.0.1", 50000), "udp")


def sample(name: str) -> dict[str, dict[str, Any]]:
    report: dict[str, dict[str, Any]] = json.loads((SAMPLES / f"{name}.json").read_text())
    return report


def only(report: dict[str, dict[str, Any]], type: str, **members: Any) -> dict[str, Any]:
    """The one entry of ``type`` (with ``members``) in ``report``."""
    found = [
        entry
        for entry in report.values()
        if entry["type"] == type and all(entry.get(k) == v for k, v in members.items())
    ]
    assert len(found) == 1, (type, members, found)
    return found[0]


@pytest.mark.parametrize("backend", ["aiortc", "wrtc"])
def test_data_connection_counts_the_channel_payload(backend: str) -> None:
    """A data connection's bytes are its channel's payload; packets, the transport's."""
    report = sample(f"{backend}_data")
    stats = ConnectionStats.from_report(report, route=ROUTE, data=True)
    transport = only(report, "transport")
    assert stats.bytes_sent == 100 * 10_000
    assert stats.bytes_received == len("héllo".encode())
    assert stats.packets_sent == transport["packetsSent"] > 100
    assert stats.packets_received == transport["packetsReceived"] > 0
    assert stats.packets_lost is None  # no RTP: SCTP retransmits what is lost
    pair = report[transport["selectedCandidatePairId"]]
    assert stats.round_trip_time == pair["currentRoundTripTime"]
    assert stats.available_outgoing_bitrate is None
    assert stats.route is ROUTE
    assert stats.tracks == ()


def test_a_call_counts_the_transport_bytes() -> None:
    """A call's bytes are the transport's (RTP, RTCP, the auxiliary channel)."""
    report = sample("aiortc_call_caller")
    stats = ConnectionStats.from_report(report)
    transport = only(report, "transport")
    assert (stats.bytes_sent, stats.bytes_received) == (
        transport["bytesSent"],
        transport["bytesReceived"],
    )
    assert stats.packets_lost == 0


def test_aiortc_call_tracks() -> None:
    """Sent tracks first (frames encoded, the remote's jitter), then received ones."""
    report = sample("aiortc_call_caller")
    stats = ConnectionStats.from_report(report)
    assert [t.direction for t in stats.tracks] == ["outbound"] * 2 + ["inbound"] * 2
    assert (
        {t.kind for t in stats.tracks[:2]}
        == {t.kind for t in stats.tracks[2:]}
        == {
            "audio",
            "video",
        }
    )
    sent = next(t for t in stats.tracks if t.direction == "outbound" and t.kind == "video")
    outbound = only(report, "outbound-rtp", kind="video")
    heard = only(report, "remote-inbound-rtp", localId=outbound["id"])
    assert sent.frames_encoded == outbound["framesEncoded"] > 0
    assert sent.frames_per_second == outbound["framesPerSecond"]
    assert sent.track_id == report[outbound["mediaSourceId"]]["trackIdentifier"]
    assert sent.jitter == heard["jitter"]
    assert sent.packets_lost == heard["packetsLost"]
    assert (sent.frames_decoded, sent.frames_dropped) == (None, None)
    received = next(t for t in stats.tracks if t.direction == "inbound" and t.kind == "video")
    inbound = only(report, "inbound-rtp", kind="video")
    assert received.frames_decoded == inbound["framesDecoded"] > 0
    assert received.frames_dropped == inbound["framesDropped"]
    assert received.track_id == inbound["trackIdentifier"]
    assert 0 < received.jitter < 0.1  # type: ignore[operator]
    audio = [t for t in stats.tracks if t.kind == "audio"]
    assert all(t.frames_encoded is t.frames_decoded is t.frames_per_second is None for t in audio)


def test_wrtc_call_tracks_and_bitrate() -> None:
    """libwebrtc's media report maps the same way (ready for calls on wrtc)."""
    caller = ConnectionStats.from_report(sample("wrtc_call_caller"))
    callee = ConnectionStats.from_report(sample("wrtc_call_callee"))
    assert caller.available_outgoing_bitrate == 1_412_666
    assert callee.available_outgoing_bitrate == 300_000
    assert caller.round_trip_time == 0.0  # libwebrtc measures STUN in whole ms
    assert [(t.direction, t.kind) for t in caller.tracks] == [
        ("outbound", "audio"),
        ("outbound", "video"),
    ]
    video = caller.tracks[1]
    assert video == TrackStats(
        kind="video",
        direction="outbound",
        track_id="8e4b40b5-7eb2-4e05-8250-bb30495fe1e2",
        frames_encoded=76,
        frames_per_second=15.0,
        jitter=0.002188,
        packets_lost=0,
    )
    received = callee.tracks[1]
    assert (received.frames_decoded, received.frames_dropped) == (76, 0)
    assert callee.bytes_received == caller.bytes_sent == 148_209


def test_rtcp_round_trip_when_no_pair_has_one() -> None:
    """Without a pair's round-trip time, the mean of the RTCP ones."""
    report: dict[str, dict[str, Any]] = {
        "r1": {"type": "remote-inbound-rtp", "id": "r1", "roundTripTime": 0.010},
        "r2": {"type": "remote-inbound-rtp", "id": "r2", "roundTripTime": 0.030},
        "r3": {"type": "remote-inbound-rtp", "id": "r3"},
    }
    assert ConnectionStats.from_report(report).round_trip_time == pytest.approx(0.020)


def test_the_transport_names_the_selected_pair() -> None:
    """The transport's selectedCandidatePairId wins over another nominated pair."""
    report: dict[str, dict[str, Any]] = {
        "T": {"type": "transport", "id": "T", "selectedCandidatePairId": "B"},
        "A": {
            "type": "candidate-pair",
            "id": "A",
            "nominated": True,
            "state": "succeeded",
            "currentRoundTripTime": 0.5,
        },
        "B": {"type": "candidate-pair", "id": "B", "currentRoundTripTime": 0.002},
    }
    assert ConnectionStats.from_report(report).round_trip_time == 0.002
    del report["T"]
    assert ConnectionStats.from_report(report).round_trip_time == 0.5
    report["A"]["state"] = "in-progress"
    assert ConnectionStats.from_report(report).round_trip_time is None


def test_packets_from_the_pair_without_transport_counts() -> None:
    """Packets come from the selected pair when the transport does not count them."""
    report: dict[str, dict[str, Any]] = {
        "P": {
            "type": "candidate-pair",
            "id": "P",
            "nominated": True,
            "state": "succeeded",
            "packetsSent": 7,
            "packetsReceived": 0,
        },
    }
    stats = ConnectionStats.from_report(report)
    assert (stats.packets_sent, stats.packets_received) == (7, 0)


def test_malformed_members_give_none() -> None:
    """Missing, non-numeric, boolean or negative counts give None; nothing raises."""
    report: dict[str, dict[str, Any]] = {
        "T": {
            "type": "transport",
            "id": "T",
            "bytesSent": "12",
            "bytesReceived": True,
            "packetsSent": -3,
            "selectedCandidatePairId": None,
        },
        "D": {"type": "data-channel", "id": "D"},
        "O": {"type": "outbound-rtp", "id": "O", "kind": "video", "framesEncoded": "x"},
    }
    for data in (False, True):
        stats = ConnectionStats.from_report(report, data=data)
        assert attrs.astuple(stats, recurse=False)[:7] == (None,) * 7
    (track,) = ConnectionStats.from_report(report).tracks
    assert track == TrackStats(kind="video", direction="outbound")
    assert ConnectionStats.from_report({}) == ConnectionStats()


def test_packets_lost_adds_both_directions_and_may_be_negative() -> None:
    """Lost on the way to us plus lost on the way out; RTCP's count may be negative."""
    report: dict[str, dict[str, Any]] = {
        "i": {"type": "inbound-rtp", "id": "i", "kind": "audio", "packetsLost": 3},
        "r": {"type": "remote-inbound-rtp", "id": "r", "kind": "audio", "packetsLost": -1},
    }
    assert ConnectionStats.from_report(report).packets_lost == 2


def test_summary_line() -> None:
    """One line: the round trip in ms, the loss and the route; n/a for what is unknown."""
    stats = ConnectionStats(round_trip_time=0.00042, packets_lost=0, route=ROUTE)
    assert stats.summary() == (
        "rtt 0.4 ms, loss 0 packets, route direct, 127.0.0.1:40000 ↔ 127.0.0.1:50000"
    )
    assert ConnectionStats().summary() == "rtt n/a, loss n/a, route n/a"


def test_stats_are_frozen() -> None:
    """The value object cannot change (it is a moment's numbers)."""
    stats = ConnectionStats(bytes_sent=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.bytes_sent = 2  # type: ignore[misc]


def test_frames_figures_are_for_video_tracks_only() -> None:
    """An audio TrackStats with a frames_* figure is refused; the same figure on video is kept."""
    with pytest.raises(ValueError, match="frames_dropped is a video figure"):
        TrackStats(kind="audio", direction="inbound", frames_dropped=0)
    assert TrackStats(kind="video", direction="inbound", frames_dropped=0).frames_dropped == 0
    assert TrackStats(kind="audio", direction="inbound", jitter=0.01).jitter == 0.01
