"""OFFERs as a remote peer sends them, built from peerpy_protocol's value objects.

Tests that play a raw remote (a flood of OFFERs, a browser-like offerer, a
broker that must relay one) send the same OFFER a PeerJS client would:
:func:`data_offer` builds the payload (spec §3.2) and :func:`offer_frame` the
signaling frame, so no test spells the wire JSON by hand.  :func:`no_candidates`
strips an SDP of its ICE candidates (nothing can connect to it).
"""

from __future__ import annotations

from peerpy_protocol.messages import RelayType, serialize_relay
from peerpy_protocol.payloads import ConnectionType, OfferPayload, SessionDescription


def data_offer(
    sdp: str,
    connection_id: str,
    *,
    label: str | None = None,
    reliable: bool = True,
    serialization: str = "binary",
) -> OfferPayload:
    """The payload of a data connection's OFFER carrying the SDP offer ``sdp``."""
    return OfferPayload(
        sdp=SessionDescription("offer", sdp),
        type=ConnectionType.DATA,
        connection_id=connection_id,
        label=label,
        reliable=reliable,
        serialization=serialization,
    )


def offer_frame(dst: str, payload: OfferPayload) -> str:
    """The OFFER frame a client sends to ``dst`` (the broker adds ``src``)."""
    return serialize_relay(RelayType.OFFER, None, dst, payload.to_json())


def no_candidates(sdp: str) -> str:
    """An SDP without its ICE candidates: nothing can connect to it."""
    return "".join(line for line in sdp.splitlines(keepends=True) if "a=candidate" not in line)
