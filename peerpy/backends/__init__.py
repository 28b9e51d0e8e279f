"""The WebRTC backends: the one seam where a peer connection is made and driven.

peerpy drives a peer connection through aiortc's API (``createOffer``,
``setRemoteDescription``, ``createDataChannel``, pyee events...). Two
libraries provide it:

- ``aiortc`` (the default, always installed): pure Python SCTP and DTLS, about
  20 MB/s per data connection (30 MB/s on uvloop); data and media.
- ``wrtc`` (``pip install 'peerpy-sdk[wrtc]'``): libwebrtc, the engine in
  Chrome, through ``webrtc.aiortc``, its aiortc-compatible layer; 100+ MB/s
  at a fraction of the CPU. peerpy uses it for data connections only; media
  calls always run on aiortc (its tracks and :mod:`peerpy.media`).

A :class:`~peerpy.Peer` picks its backend from ``backend=`` or
``PEERPY_BACKEND``: ``"auto"`` (the default) uses wrtc for data connections
when it is installed and the peer's :class:`~peerpy.network.NetworkPolicy`
and configuration can be honoured on it (:func:`wrtc_unsupported`), else
aiortc. The two interoperate, in both offer directions.

Everything here dispatches on the peer connection object, so
:mod:`peerpy.connection` has no backend-specific code; the wrtc side lives in
:mod:`peerpy._wrtc`, imported only when wrtc is used.

The event loop: aiortc runs about 1.4x faster on uvloop (asyncio's UDP
transport allocates a 256 KiB buffer per datagram received).
:func:`run` and :func:`loop_options` run peerpy on uvloop when it is installed
(it is a dependency on Linux and macOS) unless ``PEERPY_UVLOOP=0``; async users
can do the same with ``anyio.run(main, backend_options={"use_uvloop": True})``
or ``uvloop.run(main())``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from ..exceptions import ConfigurationError
from ..network import DEFAULT_UDP_BUFFER_BYTES, NetworkPolicy, address_allowed
from ..network import create_peer_connection as _create_aiortc
from ..network import watch_remote as _watch_aiortc
from ..route import Route
from ..route import route_of as _route_aiortc

if TYPE_CHECKING:
    from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription

__all__ = [
    "BACKENDS",
    "Backend",
    "candidate_from_line",
    "create_peer_connection",
    "description",
    "fastest_backend",
    "local_sdp",
    "loop_options",
    "remote_sdp",
    "resolve_backend",
    "route_of",
    "run",
    "uvloop_installed",
    "watch_remote",
    "wrtc_installed",
    "wrtc_unsupported",
]

Backend = Literal["aiortc", "wrtc"]
#: The backends by name; ``"auto"`` picks one of them per peer.
BACKENDS: Final[tuple[Backend, ...]] = ("aiortc", "wrtc")

_T = TypeVar("_T")


@functools.cache
def wrtc_installed() -> bool:
    """Whether the ``wrtc`` package (module ``webrtc``) can be imported."""
    return importlib.util.find_spec("webrtc") is not None


@functools.cache
def uvloop_installed() -> bool:
    """Whether uvloop is installed (never on Windows, where it does not exist)."""
    return sys.platform != "win32" and importlib.util.find_spec("uvloop") is not None


def resolve_backend(backend: str | None = None, *, environ: Mapping[str, str] = os.environ) -> str:
    """Validate ``backend``, else ``PEERPY_BACKEND``, else ``"auto"``.

    Raise :class:`ConfigurationError` for an unknown name and for ``"wrtc"``
    when wrtc is not installed.
    """
    name = backend if backend is not None else environ.get("PEERPY_BACKEND", "").strip()
    name = name or "auto"
    if name not in ("auto", *BACKENDS):
        raise ConfigurationError(
            f"backend must be 'auto', 'aiortc' or 'wrtc', got {name!r}"
            + (" (from PEERPY_BACKEND)" if backend is None else "")
        )
    if name == "wrtc" and not wrtc_installed():
        raise ConfigurationError(
            "backend 'wrtc' needs the wrtc package: pip install 'peerpy-sdk[wrtc]'"
        )
    return name


def wrtc_unsupported(configuration: RTCConfiguration, policy: NetworkPolicy) -> str | None:
    """Why wrtc cannot honour ``policy``/``configuration``, naming the field; ``None`` if it can.

    libwebrtc gathers on every interface (loopback too once allowed, which is
    process-wide) and sizes its own sockets, so it cannot restrict gathering
    to chosen non-loopback addresses nor take ``udp_buffer_bytes`` other than
    the default (which is aiortc tuning). Remote filtering works: peerpy
    filters the candidates it is given (SDP and trickled).
    """
    if policy.udp_buffer_bytes not in (None, DEFAULT_UDP_BUFFER_BYTES):
        return (
            "NetworkPolicy.udp_buffer_bytes cannot be set on the wrtc backend "
            "(libwebrtc sizes its own sockets); leave it at the default or use backend='aiortc'"
        )
    if policy.local_addresses is not None and not all(
        _is_loopback(a) for a in policy.local_addresses
    ):
        return (
            "NetworkPolicy.local_addresses other than loopback cannot be honoured on the wrtc "
            "backend (libwebrtc gathers on every interface); use backend='aiortc'"
        )
    policy_value = getattr(getattr(configuration, "iceTransportPolicy", None), "value", "all")
    if policy_value != "all":
        return (
            "RTCConfiguration.iceTransportPolicy='relay' is not supported on the wrtc backend; "
            "use backend='aiortc'"
        )
    return None


def _is_loopback_literal(host: str) -> bool:
    """Whether ``host`` is a loopback address literal (a hostname is not)."""
    try:
        return _is_loopback(host)
    except ValueError:
        return False


def _is_loopback(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address).is_loopback


def choose_backend(name: str, configuration: RTCConfiguration, policy: NetworkPolicy) -> Backend:
    """The backend data connections use for a peer asking for ``name``.

    ``"auto"`` falls back to aiortc when wrtc is absent, cannot honour the
    policy, or the policy restricts addresses at all (local or remote); ``"wrtc"``
    raises :class:`ConfigurationError` when it cannot honour the policy.
    """
    return explain_backend(name, configuration, policy)[0]


def explain_backend(
    name: str, configuration: RTCConfiguration, policy: NetworkPolicy
) -> tuple[Backend, str | None]:
    """:func:`choose_backend`, and why ``"auto"`` did not pick wrtc (``None`` if it did).

    The reason is what the command line prints next to the backend, so a user
    who expected the fast backend sees what kept it off and how to force it.
    """
    if name == "aiortc":
        return "aiortc", None
    if not wrtc_installed():
        if name == "wrtc":
            raise ConfigurationError("backend 'wrtc' needs the wrtc package")
        return "aiortc", "wrtc is not installed: pip install 'peerpy-sdk[wrtc]' for the fast one"
    if name == "auto" and (
        policy.local_addresses is not None or policy.remote_networks is not None
    ):
        # libwebrtc gathers on every interface and may pick a peer-reflexive route
        # outside the policy, which peerpy can only refuse once it is selected (the
        # connection then fails): auto keeps aiortc, whose hooks enforce both.
        # backend="wrtc" still takes such a policy, with that caveat.
        field = "local addresses" if policy.local_addresses is not None else "remote networks"
        return "aiortc", (
            f"not wrtc: it cannot confine ICE to the chosen {field}; PEERPY_BACKEND=wrtc forces it"
        )
    reason = wrtc_unsupported(configuration, policy)
    if reason is None:
        return "wrtc", None
    if name == "wrtc":
        raise ConfigurationError(reason)
    return "aiortc", reason


def fastest_backend() -> Backend:
    """The fastest backend installed for data connections (what the CLI uses)."""
    return "wrtc" if wrtc_installed() else "aiortc"


# --- Creating and driving a peer connection ---------------------------------


def _is_wrtc(pc: object) -> bool:
    return getattr(pc, "_peerpy_backend", "aiortc") == "wrtc"


def backend_of(pc: object) -> Backend:
    """Which backend made ``pc``."""
    return "wrtc" if _is_wrtc(pc) else "aiortc"


def create_peer_connection(
    backend: Backend,
    configuration: RTCConfiguration,
    policy: NetworkPolicy,
    *,
    remote_gone: float | None = None,
) -> RTCPeerConnection:
    """A peer connection of ``backend`` following ``policy`` (see :mod:`peerpy.network`).

    A wrtc one is ``webrtc.aiortc``'s ``RTCPeerConnection``, which mirrors
    aiortc's API; it is typed as aiortc's for the code driving it.
    """
    if backend == "wrtc":
        from . import wrtc as _wrtc

        return _wrtc.create_peer_connection(configuration, policy, remote_gone=remote_gone)
    return _create_aiortc(configuration, policy, remote_gone=remote_gone)


def description(pc: RTCPeerConnection, sdp: str, type: str) -> RTCSessionDescription:
    """A session description ``pc`` accepts."""
    if _is_wrtc(pc):
        from webrtc.aiortc import RTCSessionDescription as WrtcDescription

        return WrtcDescription(sdp=sdp, type=type)  # type: ignore[no-any-return]
    from aiortc import RTCSessionDescription

    return RTCSessionDescription(sdp=sdp, type=type)


def candidate_from_line(pc: RTCPeerConnection, line: str) -> RTCIceCandidate:
    """Parse a candidate line (without ``candidate:``) into what ``pc.addIceCandidate`` takes.

    Raise ``ValueError`` or ``IndexError`` on a malformed line.
    """
    if _is_wrtc(pc):
        from webrtc.aiortc.sdp import candidate_from_sdp as wrtc_parse

        return wrtc_parse(line)  # type: ignore[no-any-return]
    from aiortc.sdp import candidate_from_sdp

    return candidate_from_sdp(line)


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


def remote_sdp(pc: RTCPeerConnection, sdp: str, policy: NetworkPolicy) -> str:
    """The remote SDP to apply: on wrtc, without candidates outside ``remote_networks``.

    (aiortc filters them itself, through peerpy's aioice hooks.)
    """
    if not _is_wrtc(pc) or policy.remote_networks is None:
        return sdp
    import ipaddress

    networks = tuple(ipaddress.ip_network(n) for n in policy.remote_networks)
    return _filter_candidates(sdp, lambda _protocol, host: address_allowed(host, networks))


def local_sdp(pc: RTCPeerConnection, sdp: str, policy: NetworkPolicy) -> str:
    """The local SDP to send: on wrtc, only candidates on ``local_addresses`` (loopback ones).

    libwebrtc also gathers ``::1`` and TCP candidates; the remote learns only
    the addresses the policy names, so only those carry traffic. With
    ``local_addresses=None``, loopback candidates are left out as aioice does
    (unless there is nothing else).
    """
    if not _is_wrtc(pc):
        return sdp
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


#: Seconds a wrtc connection may wait, before it opens, for libwebrtc to disclose a
#: peer-reflexive remote's address (see :func:`route_undisclosed`).
ROUTE_DISCLOSURE_WAIT: Final = 5.0


def route_undisclosed(pc: RTCPeerConnection, policy: NetworkPolicy) -> bool:
    """Whether ``policy.remote_networks`` cannot be checked yet on ``pc``'s route.

    On wrtc, when the remote's connectivity checks arrive before its trickled
    candidate (a browser trickles its candidates after the OFFER, through the
    broker), libwebrtc selects a peer-reflexive remote whose address it does
    not disclose; it does once that candidate is added. The connection waits
    for it (up to :data:`ROUTE_DISCLOSURE_WAIT`) before it opens, instead of
    refusing a route it cannot see yet.
    """
    if not _is_wrtc(pc) or policy.remote_networks is None:
        return False
    route = route_of(pc)
    return route is not None and route.remote_address[0] == "?"


def route_refused(pc: RTCPeerConnection, policy: NetworkPolicy) -> str | None:
    """Why ``pc``'s route breaks ``policy.remote_networks``; ``None`` if it does not.

    Only wrtc needs this check: aiortc's hooks drop packets from outside the
    networks, libwebrtc may pair with a peer-reflexive candidate (learnt from
    a check the remote sent), whose address it does not even disclose.
    """
    if not _is_wrtc(pc) or policy.remote_networks is None:
        return None
    route = route_of(pc)
    if route is None:
        return None
    import ipaddress

    networks = tuple(ipaddress.ip_network(n) for n in policy.remote_networks)
    host = route.remote_address[0]
    if address_allowed(host, networks):
        return None
    shown = "an undisclosed peer-reflexive address" if host == "?" else host
    return (
        f"the route goes to {shown}, outside NetworkPolicy.remote_networks "
        "(on wrtc, peerpy can only check the route once selected)"
    )


def watch_remote(pc: RTCPeerConnection, callback: Callable[[float], None]) -> bool:
    """Call ``callback(seconds_silent)`` once ``pc``'s remote is gone (``Timeouts.remote_gone``)."""
    if _is_wrtc(pc):
        from . import wrtc as _wrtc

        return _wrtc.watch_remote(pc, callback)
    return _watch_aiortc(pc, callback)


def route_of(pc: RTCPeerConnection) -> Route | None:
    """The candidate pair ``pc`` uses (see :mod:`peerpy.route`); ``None`` before there is one."""
    if _is_wrtc(pc):
        from . import wrtc as _wrtc

        return _wrtc.route_of(pc)
    return _route_aiortc(pc)


# --- The event loop ------------------------------------------------------------


def use_uvloop(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether :func:`run` uses uvloop: installed and not ``PEERPY_UVLOOP=0``."""
    return uvloop_installed() and environ.get("PEERPY_UVLOOP", "1").strip() != "0"


def loop_options() -> dict[str, Any]:
    """anyio's ``backend_options`` for the asyncio backend: uvloop when :func:`use_uvloop`."""
    return {"use_uvloop": use_uvloop()}


def run(func: Callable[..., Awaitable[_T]], *args: object) -> _T:
    """``anyio.run(func, *args)`` on asyncio, on uvloop when :func:`use_uvloop`."""
    import anyio

    return anyio.run(func, *args, backend="asyncio", backend_options=loop_options())
