"""Candidate lines filtered out of an SDP by a NetworkPolicy: pure text, no backend.

The wrtc backend cannot hook libwebrtc's gathering nor its candidate intake,
so it applies the policy to the SDP it sends (:func:`local_candidates`) and
receives (:func:`remote_candidates`); aiortc's hooks do both inside aioice.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from ..network import NetworkPolicy, address_allowed, remote_networks

__all__ = ["local_candidates", "remote_candidates"]

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ (\S+) \d+ (\S+) \d+ typ ")


def _filter_candidates(sdp: str, keep: Callable[[str, str], bool]) -> str:
    """``sdp`` without the ``a=candidate`` lines ``keep(protocol, address)`` refuses."""
    sep = "\r\n" if "\r\n" in sdp else "\n"
    kept = []
    for line in sdp.split(sep):
        match = _CANDIDATE.match(line)
        if match is not None and not keep(match.group(1).lower(), match.group(2)):
            continue
        kept.append(line)
    return sep.join(kept)


def _is_loopback_literal(host: str) -> bool:
    """Whether ``host`` is a loopback address literal (a hostname is not)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_candidates(
    sdp: str, policy: NetworkPolicy, routed: Callable[[str], bool] | None = None
) -> str:
    """``sdp`` without the candidates outside ``policy.remote_networks``.

    ``routed(host)``, when given, must also accept the candidate's address (the
    wrtc backend passes a check of the local address the kernel would send from).
    """
    networks = remote_networks(policy)
    if networks is None and routed is None:
        return sdp
    return _filter_candidates(
        sdp,
        lambda _protocol, host: (
            address_allowed(host, networks) and (routed is None or routed(host))
        ),
    )


def local_candidates(sdp: str, policy: NetworkPolicy) -> str:
    """``sdp`` with only the candidates on ``policy.local_addresses`` (loopback ones).

    libwebrtc also gathers ``::1`` and TCP candidates; the remote learns only
    the addresses the policy names, so only those carry traffic. With
    ``local_addresses=None``, loopback candidates are left out as aioice does
    (unless there is nothing else).
    """
    if policy.local_addresses is None:
        # Like aioice: no loopback candidates, unless loopback is all there is
        # (an offline machine).
        hosts = [m.group(2) for m in map(_CANDIDATE.match, sdp.splitlines()) if m is not None]
        if all(_is_loopback_literal(h) for h in hosts):
            return sdp
        return _filter_candidates(sdp, lambda _protocol, host: not _is_loopback_literal(host))
    allowed = set(policy.local_addresses)
    # UDP only: libwebrtc's active TCP candidates (port 9) would lead nowhere here.
    return _filter_candidates(sdp, lambda protocol, host: protocol == "udp" and host in allowed)
