"""The transfer protocol (pure: frames in, messages out): its decoder against garbage and
hostile offers, frame bounds before and after authentication."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerpy.transfer import TransferProtocolError
from peerpy.transfer.protocol import (
    MAX_CHUNK,
    MAX_FILES,
    MAX_FRAME,
    MAX_OFFER_BYTES,
    PRE_AUTH_MAX_FRAME,
    Accept,
    Data,
    Decoder,
    FileEntry,
    Offer,
    Pake,
    Resume,
    encode,
    offer_bytes,
    parse,
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


@given(st.one_of(st.binary(), st.dictionaries(st.text(max_size=5), st.integers() | st.text())))
def test_parse_garbage_raises_protocol_error(value: object) -> None:
    """parse() raises only TransferProtocolError on anything but a valid control map."""
    with contextlib.suppress(TransferProtocolError):
        parse(value)


@given(st.binary(max_size=300), st.booleans())
def test_decoder_garbage_raises_protocol_error(frame: bytes, authenticated: bool) -> None:
    """Decoder.feed() raises only TransferProtocolError on garbage frames."""
    decoder = Decoder()
    if authenticated:
        decoder.authenticated()
    with contextlib.suppress(TransferProtocolError):
        decoder.feed(frame)


def test_decoder_refuses_big_frames_before_authentication() -> None:
    """Before the code is proved, a frame over 4 KiB is refused without being decoded
    (here a valid msgpack bomb of nested empty arrays); after, up to 64 KiB pass."""
    bomb = b"M" + b"\xdc\x13\x00" + b"\x90" * 4864  # array16 of 4864 empty arrays
    decoder = Decoder()
    with pytest.raises(TransferProtocolError, match="before proving it knows the code"):
        decoder.feed(bomb)
    assert len(bomb) > PRE_AUTH_MAX_FRAME
    decoder = Decoder()
    assert decoder.feed(encode(Pake(b"x" * 33))[0]) == Pake(b"x" * 33)
    decoder.authenticated()
    data = Data(7, b"y" * MAX_CHUNK)
    (frame,) = encode(data)
    assert len(frame) == MAX_FRAME
    got = decoder.feed(frame)
    assert isinstance(got, Data)
    assert (got.offset, bytes(got.data)) == (7, data.data)
    with pytest.raises(TransferProtocolError, match="65537 bytes"):
        decoder.feed(frame + b"z")


def test_long_offers_and_accepts_split_into_frames() -> None:
    """Offers and accepts longer than a frame travel in several frames and join back."""
    entries = tuple(FileEntry(f"dir/{'n' * 200}-{i}", size=i, mtime=1.5) for i in range(2000))
    resume = tuple(Resume(i, i * 10, bytes(32)) for i in range(5000))
    for message in (Offer(entries), Accept(resume)):
        frames = encode(message)
        assert len(frames) > 2
        assert all(len(frame) <= MAX_FRAME for frame in frames)
        decoder = Decoder()
        decoder.authenticated()
        results = [decoder.feed(frame) for frame in frames]
        assert results[:-1] == [None] * (len(frames) - 1)
        assert results[-1] == message


@pytest.mark.parametrize("mtime", [1e300, -1e300, float("inf"), float("nan"), 2.0**40])
def test_absurd_mtimes_are_protocol_errors(mtime: float) -> None:
    """An mtime os.utime cannot take is refused when the offer is parsed."""
    (frame,) = encode(Offer((FileEntry("x", size=1, mtime=mtime),)))
    decoder = Decoder()
    decoder.authenticated()
    with pytest.raises(TransferProtocolError, match="mtime"):
        decoder.feed(frame)
