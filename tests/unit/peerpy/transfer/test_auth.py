"""Transfer codes (words, parsing, how long a nameplate is, by where the broker is) and the
SPAKE2 handshake with its DTLS fingerprint check."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from peerpy.transfer import (
    AuthenticationError,
    BadCodeError,
    ManInTheMiddleError,
    make_code,
    parse_code,
)
from peerpy.transfer.auth import (
    LOCAL_NAMEPLATES,
    SHARED_NAMEPLATES,
    Code,
    Handshake,
    certificate_fingerprint,
    connection_fingerprints,
    nameplate_span,
    sdp_fingerprints,
)
from peerpy.transfer.words import WORDS


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "::1", "[::1]", "10.1.2.3", "172.16.0.9", "192.168.1.20",
     "169.254.3.4", "fe80::1%eth0", "fd12::5", "::ffff:192.168.1.2", "nas", "nas.local",
     "pi.lan", "box.home.arpa", "broker.internal", "LOCALHOST."],
)  # fmt: skip
def test_a_local_or_lan_broker_keeps_short_nameplates(host: str) -> None:
    """On this machine or the local network, nameplates stay 1..999 (short to type)."""
    assert nameplate_span([host]) == LOCAL_NAMEPLATES == 999


@pytest.mark.parametrize(
    "host",
    ["0.peerjs.com", "broker.example.com", "8.8.8.8", "100.64.0.1", "2001:4860::1",
     "::ffff:8.8.8.8", "peerpy.example.org."],
)  # fmt: skip
def test_a_shared_broker_gets_long_nameplates(host: str) -> None:
    """On any other broker, a stranger trying each nameplate once (a wrong code ends
    that transfer) needs a million tries instead of 999 to end every transfer."""
    assert nameplate_span([host]) == SHARED_NAMEPLATES == 999_999


def test_one_shared_broker_among_several_makes_them_long() -> None:
    """A cluster with any broker outside the local network counts as shared."""
    assert nameplate_span(["127.0.0.1", "broker.example.com"]) == SHARED_NAMEPLATES
    assert nameplate_span(["127.0.0.1", "192.168.0.2"]) == LOCAL_NAMEPLATES


def test_word_list_and_codes() -> None:
    """256 distinct words; codes print as number-words and parse back, forgivingly."""
    assert len(WORDS) == 256 == len(set(WORDS))
    code = make_code(7)
    assert str(code).startswith("7-")
    assert len(code.words) == 2
    assert parse_code(str(code)) == code
    assert parse_code("  7 Purple  sausage ") == Code(7, ("purple", "sausage"))
    assert parse_code("7-purple-sausage").peer_id == "peerpy-xfer-7"
    for bad in ("", "purple-sausage", "7", "7-", "x-purple", "7-pur ple!"):
        with pytest.raises(BadCodeError):
            parse_code(bad)


def test_handshake_detects_wrong_code_and_swapped_fingerprints() -> None:
    """Same code and fingerprints verify; another code or certificate is refused."""
    fa, fb, fm = ("sha-256 AA",), ("sha-256 BB",), ("sha-256 CC",)

    def run(code_b: Code, b_remote: tuple[str, ...]) -> None:
        a = Handshake(Code(1, ("x", "y")), "sender", fa, fb)
        b = Handshake(code_b, "receiver", fb, b_remote)
        pa, pb = a.start(), b.start()
        ca, cb = a.on_pake(pb), b.on_pake(pa)
        a.on_confirm(cb)
        b.on_confirm(ca)

    run(Code(1, ("x", "y")), fa)
    with pytest.raises(AuthenticationError) as info:
        run(Code(1, ("x", "z")), fa)
    assert not isinstance(info.value, ManInTheMiddleError)
    with pytest.raises(ManInTheMiddleError):
        run(Code(1, ("x", "y")), fm)


def test_sdp_fingerprints_normalized() -> None:
    """Fingerprint lines are collected, lowercased algorithm, uppercased value, sorted."""
    sdp = "v=0\r\na=fingerprint:SHA-256 ab:cd\r\nm=application\r\na=fingerprint:sha-512 01\r\n"
    assert sdp_fingerprints(sdp) == ("sha-256 AB:CD", "sha-512 01")
    with pytest.raises(AuthenticationError):
        sdp_fingerprints("v=0\r\n")


def fake_pc(local: list[str], remote: list[str]) -> Any:
    """A peer connection as connection_fingerprints reads it: SDPs carrying these
    fingerprint lines, a DTLS transport using the local ones."""

    def sdp(lines: list[str]) -> Any:
        return SimpleNamespace(sdp="v=0\r\n" + "".join(f"a=fingerprint:{x}\r\n" for x in lines))

    used = [SimpleNamespace(algorithm=a, value=v) for a, v in (x.split() for x in local)]
    dtls = SimpleNamespace(getLocalParameters=lambda: SimpleNamespace(fingerprints=used))
    return SimpleNamespace(
        localDescription=sdp(local),
        remoteDescription=sdp(remote),
        sctp=SimpleNamespace(transport=dtls),
    )


def test_both_sides_name_the_certificates_alike_whatever_fingerprints_they_list() -> None:
    """aiortc lists three fingerprints of its certificate, libwebrtc keeps one of them
    in its remote description: both sides still prove the same pair (the sha-256 of
    each certificate), and a remote SDP naming another certificate is refused."""
    aiortc_cert, wrtc_cert = b"aiortc certificate", b"wrtc certificate"
    aiortc_lists = [
        certificate_fingerprint(aiortc_cert, a) for a in ("sha-256", "sha-384", "sha-512")
    ]
    wrtc_lists = [certificate_fingerprint(wrtc_cert)]
    on_aiortc = connection_fingerprints(fake_pc(aiortc_lists, wrtc_lists), wrtc_cert)
    on_wrtc = connection_fingerprints(fake_pc(wrtc_lists, aiortc_lists[2:]), aiortc_cert)
    assert on_aiortc == (on_wrtc[1], on_wrtc[0])
    assert on_aiortc[0] == (certificate_fingerprint(aiortc_cert),)
    with pytest.raises(AuthenticationError, match="does not match its SDP"):
        connection_fingerprints(fake_pc(wrtc_lists, aiortc_lists), b"another certificate")
    with pytest.raises(AuthenticationError, match="presented no"):
        connection_fingerprints(fake_pc(wrtc_lists, aiortc_lists), None)
