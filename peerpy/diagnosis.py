"""Why ICE failed: what each side gathered, which servers were used, the likely fix.

:func:`explain_ice_failure` has the connection's backend read its ICE state
into an :class:`IceSummary` (on aiortc, aioice's candidate lists), and
:func:`explain` turns a summary into one or two sentences for
:class:`~peerpy.exceptions.NegotiationFailedError`.  ``explain``
is pure, so each diagnosis is tested without a network.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from .backends import backend_of
from .route import CANDIDATE_TYPES

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

__all__ = ["IceSummary", "explain", "explain_ice_failure", "summarize"]

_DOCS = "see docs/network.md, 'Between networks'"


@attrs.frozen
class IceSummary:
    """Candidate counts by type on each side, and the ICE servers ours used."""

    local: dict[str, int]
    remote: dict[str, int]
    stun: bool
    turn: bool
    #: Whether every local (remote) host candidate is a loopback address.
    local_loopback_only: bool = False
    remote_loopback_only: bool = False

    @classmethod
    def of(
        cls, local: Iterable[Any], remote: Iterable[Any], *, stun: bool, turn: bool
    ) -> IceSummary:
        """The summary of candidates (objects with ``type`` and ``host``) on each side."""
        local, remote = list(local), list(remote)
        return cls(
            local=_counts(local),
            remote=_counts(remote),
            stun=stun,
            turn=turn,
            local_loopback_only=_loopback_only(local),
            remote_loopback_only=_loopback_only(remote),
        )


def _counts(candidates: Iterable[Any]) -> dict[str, int]:
    counts = Counter(str(c.type) for c in candidates)
    return {kind: counts[kind] for kind in CANDIDATE_TYPES if counts[kind]}


def _loopback_only(candidates: Iterable[Any]) -> bool:
    hosts = [c.host for c in candidates if c.type == "host"]
    try:
        return bool(hosts) and all(ipaddress.ip_address(h).is_loopback for h in hosts)
    except ValueError:  # an mDNS name
        return False


def summarize(pc: RTCPeerConnection) -> IceSummary | None:
    """The summary of ``pc``'s first ICE transport; ``None`` if it has none yet.

    Read by ``pc``'s backend (:meth:`peerpy.backends.Backend.ice_summary`);
    wrtc discloses no candidate lists, so it is ``None`` there.
    """
    return backend_of(pc).ice_summary(pc)


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "none"


def explain(summary: IceSummary) -> str:
    """What was gathered and the likely fix, in plain words."""
    servers = " and ".join(name for name, used in (("STUN", summary.stun),
                                                   ("TURN", summary.turn)) if used)  # fmt: skip
    facts = (
        f"ICE candidates here: {_describe(summary.local)}; from the other side: "
        f"{_describe(summary.remote)}; ICE servers: {servers or 'none'}."
    )
    return f"{facts} {_fix(summary)}"


def _fix(s: IceSummary) -> str:
    local_relay, remote_relay = s.local.get("relay", 0), s.remote.get("relay", 0)
    if not s.remote:
        return "The other side sent no candidates: it may not have answered, or trickled none."
    if s.local_loopback_only != s.remote_loopback_only:
        return (
            "One side gathers on loopback only, the other not: they cannot reach each "
            "other; set PEERPY_ICE_ADDRESSES (or ice_addresses=) to an address both can use."
        )
    if not s.stun and not s.turn:
        return (
            "No STUN or TURN server is configured: that only works on one network. "
            "Across NATs configure STUN, and TURN for symmetric NATs or blocked UDP "
            f"(peerpy-server --stun --turn-url ...; {_DOCS})."
        )
    if s.turn and not local_relay:
        return (
            "The TURN server gave this side no relay candidate: it is unreachable, or it "
            "refused the credentials (expired or wrong secret)."
        )
    if local_relay or remote_relay:
        return (
            "Even the relay did not connect: check that the TURN server's relay ports "
            "are open and that it may relay to the other side's addresses."
        )
    if s.stun and not s.local.get("srflx"):
        return "The STUN server did not answer: it is unreachable or filtered."
    return (
        "Both sides know their public addresses but no direct path works: a symmetric "
        f"NAT or a firewall is likely on the way; configure a TURN server ({_DOCS})."
    )


def explain_ice_failure(pc: RTCPeerConnection) -> str:
    """:func:`explain` for ``pc``; empty if it never got as far as ICE."""
    summary = summarize(pc)
    return "" if summary is None else explain(summary)


def failure_message(text: str, pc: RTCPeerConnection) -> str:
    """``text`` (a sentence, its final period optional) followed by the ICE diagnosis."""
    explanation = explain_ice_failure(pc)
    if not explanation:
        return text
    return f"{text.rstrip('.')}. {explanation}"
