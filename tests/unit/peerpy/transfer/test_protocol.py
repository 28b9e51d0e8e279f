"""The transfer protocol's decoder against hostile offers (pure: frames in, messages out)."""

from __future__ import annotations

import pytest

from peerpy.transfer import TransferProtocolError
from peerpy.transfer.protocol import (
    MAX_FILES,
    MAX_FRAME,
    MAX_OFFER_BYTES,
    Decoder,
    FileEntry,
    Offer,
    encode,
    offer_bytes,
)


def long_offer(nbytes: int) -> Offer:
    """An offer of files with 4 000-character paths whose frames take about ``nbytes``."""
    count = nbytes // 4050 + 1
    return Offer(tuple(FileEntry(f"{i:06}" + "p" * 3994, size=1) for i in range(count)))


def test_an_offer_over_its_byte_bound_is_refused_as_it_crosses_it() -> None:
    """An authenticated sender cannot make the receiver hold ~0.4 GB of offer (100 000
    paths of 4 096 characters): the frames that would take it past MAX_OFFER_BYTES
    are refused at the first one over, before the offer is complete."""
    offer = long_offer(MAX_OFFER_BYTES + 4 * MAX_FRAME)
    frames = encode(offer)
    assert len(offer.entries) < MAX_FILES
    assert all(len(frame) <= MAX_FRAME for frame in frames)
    decoder = Decoder()
    decoder.authenticated()
    fed = 0
    for frame in frames:
        fed += len(frame)
        if fed > MAX_OFFER_BYTES:
            break
        assert decoder.feed(frame) is None
    with pytest.raises(TransferProtocolError, match="an offer of over 16777216 bytes"):
        decoder.feed(frame)
    assert MAX_OFFER_BYTES < fed <= MAX_OFFER_BYTES + MAX_FRAME
    assert fed < sum(len(frame) for frame in frames)


def test_an_offer_under_its_byte_bound_is_joined() -> None:
    """Just under the bound, the parts join into the offer as sent."""
    offer = long_offer(MAX_OFFER_BYTES - 2 * MAX_FRAME)
    assert MAX_OFFER_BYTES - 1024 * 1024 < offer_bytes(offer) <= MAX_OFFER_BYTES
    decoder = Decoder()
    decoder.authenticated()
    results = [decoder.feed(frame) for frame in encode(offer)]
    assert results[-1] == offer
