"""Transfer codes, and end-to-end verification a malicious broker cannot break.

A code such as ``7-purple-sausage`` is a *nameplate* (``7``: the sender
registers ``peerpy-xfer-7`` on the broker) and words (the secret).  The whole
code is the password of a SPAKE2 exchange (the ``spake2`` package, symmetric
mode): both sides get the same 256-bit key only if they typed the same code,
and an eavesdropper, the broker included, learns nothing it could test
offline.  One wrong guess ends the transfer, so the two words (16 bits) are
enough, as in magic-wormhole.

The key then authenticates the WebRTC connection itself.  Each side sends

* ``key_mac``: HMAC(key, role), proving it knows the code, and
* ``fingerprint_mac``: HMAC(key, role, own DTLS fingerprint, peer's DTLS
  fingerprint): the sha-256 of our certificate (from our SDP) and of the one
  the peer presented in the DTLS handshake.

A broker that swaps the SDP to put itself in the middle of DTLS can relay the
SPAKE2 messages untouched, so both sides still agree on the key, but each
side then sees the broker's certificate as "the peer's": the fingerprint MACs
differ and both sides refuse (:class:`ManInTheMiddleError`).  Naming each
certificate by one hash of its own, not by the SDP's lines, lets the backends
mix: aiortc advertises three fingerprints, libwebrtc keeps one of them in its
remote description.  The backends check the remote certificate against the
remote SDP during the DTLS handshake; :func:`connection_fingerprints` checks
again.  Nothing here does I/O except reading those attributes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from typing import Any, Final, Literal

import attrs
from spake2 import SPAKE2_Symmetric  # type: ignore[import-untyped]
from spake2.spake2 import SPAKEError  # type: ignore[import-untyped]

from .errors import AuthenticationError, BadCodeError, ManInTheMiddleError
from .protocol import PROTOCOL, Confirm, Pake
from .words import WORDS

__all__ = [
    "NAMEPLATE_PREFIX",
    "Code",
    "Handshake",
    "Role",
    "certificate_fingerprint",
    "connection_fingerprints",
    "make_code",
    "nameplate_span",
    "parse_code",
    "sdp_fingerprints",
]

#: The broker id of a sender is this prefix followed by the nameplate.
NAMEPLATE_PREFIX: Final = "peerpy-xfer-"
Role = Literal["sender", "receiver"]
#: Nameplates 1..999 on a broker of this machine or the local network: short
#: to type, and only neighbours can try them.
LOCAL_NAMEPLATES: Final = 999
#: Nameplates 1..999 999 on any other broker: a stranger who tries each
#: nameplate once (a wrong code ends that transfer) needs a million tries,
#: not a thousand, to end every waiting transfer.
SHARED_NAMEPLATES: Final = 999_999
_LAN_SUFFIXES: Final = (".local", ".lan", ".home", ".home.arpa", ".internal", ".localhost")
_CODE_RE: Final = re.compile(r"^(\d{1,9})((?:-[a-z0-9]+){1,8})$")
_FINGERPRINT_RE: Final = re.compile(r"^a=fingerprint:(\S+)\s+([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


@attrs.frozen
class Code:
    """A transfer code: the nameplate and the secret words."""

    nameplate: int
    words: tuple[str, ...]

    def __str__(self) -> str:
        return "-".join((str(self.nameplate), *self.words))

    @property
    def peer_id(self) -> str:
        """The id the sender registers on the broker."""
        return f"{NAMEPLATE_PREFIX}{self.nameplate}"

    @property
    def password(self) -> bytes:
        """What both sides feed to SPAKE2: the whole code."""
        return str(self).encode()


def make_code(nameplate: int, *, words: int = 2) -> Code:
    """A fresh code for ``nameplate`` with ``words`` random words (8 bits each)."""
    if nameplate < 0 or not 1 <= words <= 8:
        raise BadCodeError("a code needs a nameplate >= 0 and 1 to 8 words")
    return Code(nameplate, tuple(secrets.choice(WORDS) for _ in range(words)))


def nameplate_span(hosts: list[str]) -> int:
    """How many nameplates a sender draws from on brokers at ``hosts``.

    :data:`LOCAL_NAMEPLATES` if every host is this machine or the local
    network (a loopback, private or link-local address, ``localhost``, a
    name without a dot or under ``.local``, ``.lan``, ``.home.arpa``...),
    else :data:`SHARED_NAMEPLATES`.
    """
    return LOCAL_NAMEPLATES if all(_is_local(h) for h in hosts) else SHARED_NAMEPLATES


def _is_local(host: str) -> bool:
    name = host.strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return name == "localhost" or "." not in name or name.endswith(_LAN_SUFFIXES)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    shared = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not a LAN
    local = address.is_loopback or address.is_private or address.is_link_local
    return local and address not in shared


def parse_code(text: str) -> Code:
    """Parse ``7-purple-sausage`` (case and spaces forgiven); raise BadCodeError."""
    normal = "-".join(text.strip().lower().replace(" ", "-").split("-"))
    normal = re.sub("-+", "-", normal)
    match = _CODE_RE.match(normal)
    if match is None:
        raise BadCodeError(
            f"{text!r} is not a transfer code: expected a number and words, like 7-purple-sausage"
        )
    return Code(int(match.group(1)), tuple(match.group(2).strip("-").split("-")))


def sdp_fingerprints(sdp: str) -> tuple[str, ...]:
    """Every ``a=fingerprint`` of an SDP, normalized (``sha-256 AB:CD:…``) and sorted."""
    found = {f"{alg.lower()} {value.upper()}" for alg, value in _FINGERPRINT_RE.findall(sdp)}
    if not found:
        raise AuthenticationError("the session description carries no DTLS fingerprint")
    return tuple(sorted(found))


#: The hash the proof names both certificates by: every backend advertises it.
PROOF_HASH: Final = "sha-256"
_HASHES: Final = {"sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}


def certificate_fingerprint(der: bytes, algorithm: str = PROOF_HASH) -> str:
    """The fingerprint of a DER certificate, as :func:`sdp_fingerprints` gives it."""
    raw = hashlib.new(_HASHES[algorithm], der).hexdigest().upper()
    return f"{algorithm} " + ":".join(raw[i : i + 2] for i in range(0, len(raw), 2))


def connection_fingerprints(
    pc: Any, remote_certificate: bytes | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(ours, theirs)``: the sha-256 fingerprints of both DTLS certificates of ``pc``.

    Ours is read from our SDP and must be one our DTLS transport uses; theirs
    is the digest of ``remote_certificate`` (DER), the one the remote
    presented, which every fingerprint of the remote SDP must match.  Both
    sides thus name both certificates alike, whichever fingerprints each
    backend lists (aiortc: sha-256, -384 and -512) or keeps of the remote's
    (libwebrtc: one).  Raise :class:`AuthenticationError` if anything disagrees.
    """
    if pc.localDescription is None or pc.remoteDescription is None:
        raise AuthenticationError("the connection has no local or remote description yet")
    local = sdp_fingerprints(pc.localDescription.sdp)
    ours = [line for line in local if line.partition(" ")[0] == PROOF_HASH]
    if len(ours) != 1:
        raise AuthenticationError(f"our SDP does not give one {PROOF_HASH} DTLS fingerprint")
    dtls = getattr(getattr(pc, "sctp", None), "transport", None)
    if dtls is None:
        raise AuthenticationError("the connection has no DTLS transport")
    mine = {
        f"{f.algorithm.lower()} {f.value.upper()}" for f in dtls.getLocalParameters().fingerprints
    }
    if not set(local) <= mine:
        raise AuthenticationError(
            "our SDP advertises a certificate our DTLS transport does not use"
        )
    if remote_certificate is None:
        raise AuthenticationError("the remote presented no DTLS certificate")
    for line in sdp_fingerprints(pc.remoteDescription.sdp):
        algorithm = line.partition(" ")[0]
        if algorithm in _HASHES and certificate_fingerprint(remote_certificate, algorithm) != line:
            raise AuthenticationError("the remote DTLS certificate does not match its SDP")
    return (ours[0],), (certificate_fingerprint(remote_certificate),)


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"\0".join(parts), hashlib.sha256).digest()


class Handshake:
    """One side's SPAKE2 + fingerprint confirmation, sans I/O.

    ``start()`` gives our :class:`Pake` message; ``on_pake()`` takes the
    peer's and gives our :class:`Confirm`; ``on_confirm()`` checks the peer's
    and raises :class:`AuthenticationError` (wrong code) or
    :class:`ManInTheMiddleError` (same code, other certificates).
    """

    def __init__(
        self, code: Code, role: Role, local: tuple[str, ...], remote: tuple[str, ...]
    ) -> None:
        self._role = role
        self._peer_role: Role = "receiver" if role == "sender" else "sender"
        self._local = "\n".join(local).encode()
        self._remote = "\n".join(remote).encode()
        self._spake = SPAKE2_Symmetric(code.password, idSymmetric=PROTOCOL.encode())
        self._key: bytes | None = None
        self._started = False
        self.verified = False

    def start(self) -> Pake:
        """Our SPAKE2 message."""
        self._started = True
        return Pake(bytes(self._spake.start()))

    def _macs(self, role: Role, own: bytes, peer: bytes) -> Confirm:
        assert self._key is not None
        confirm_key = _mac(self._key, PROTOCOL.encode(), b"key-confirmation")
        fingerprint_key = _mac(self._key, PROTOCOL.encode(), b"dtls-fingerprints")
        return Confirm(
            _mac(confirm_key, role.encode()),
            _mac(fingerprint_key, role.encode(), own, peer),
        )

    def on_pake(self, message: Pake) -> Confirm:
        """Finish SPAKE2 with the peer's message; return our confirmation."""
        if self._key is not None or not self._started:
            raise AuthenticationError("a PAKE message arrived out of order")
        try:
            self._key = bytes(self._spake.finish(message.message))
        except (SPAKEError, ValueError, TypeError) as exc:
            raise AuthenticationError(f"the other side sent a bad PAKE message: {exc}") from None
        return self._macs(self._role, self._local, self._remote)

    def on_confirm(self, message: Confirm) -> None:
        """Check the peer's confirmation; raise if the code or the certificates differ."""
        if self._key is None:
            raise AuthenticationError("the other side confirmed before the PAKE exchange")
        expected = self._macs(self._peer_role, self._remote, self._local)
        if not hmac.compare_digest(expected.key_mac, message.key_mac):
            raise _wrong_code(self._role)
        if not hmac.compare_digest(expected.fingerprint_mac, message.fingerprint_mac):
            raise ManInTheMiddleError(
                "the code matches but the encrypted connection does not end at the other side: "
                "its DTLS certificate is not the one it saw (a man in the middle, such as a "
                "hostile broker); nothing was sent"
            )
        self.verified = True


def _wrong_code(role: Role) -> AuthenticationError:
    """A code mismatch, worded for the side that found it and for the other side."""
    if role == "receiver":
        error = AuthenticationError(
            "wrong code: it does not match the sender's (check it for a typo, or ask for "
            "a new one); nothing was received"
        )
        error.telling_peer("it typed a code that does not match (nothing was sent)")
    else:
        error = AuthenticationError(
            "the receiver does not know the code: a wrong code (a typo, or a guessing "
            "attempt); nothing was sent"
        )
        error.telling_peer("the code does not match the sender's (check it for a typo)")
    return error
