"""The WebRTC backends: the one seam where a peer connection is made and driven.

peerpy drives a peer connection through aiortc's API (``createOffer``,
``setRemoteDescription``, ``createDataChannel``, pyee events...). Two
libraries provide it:

- ``aiortc`` (always installed, the fallback): pure Python SCTP and DTLS, about
  20 MB/s per data connection (30 MB/s on uvloop); data and media.
- ``wrtc`` (installed with peerpy where its wheels exist): libwebrtc, the engine in
  Chrome, through ``webrtc.aiortc``, its aiortc-compatible layer; 100+ MB/s
  at a fraction of the CPU; data and media (libwebrtc's codecs, at a fraction
  of aiortc's CPU per stream), the application's tracks staying aiortc's
  (:mod:`peerpy.backends.wrtc_media`).

A :class:`~peerpy.Peer` picks its backend from ``backend=`` or
``PEERPY_BACKEND``, for its data connections and calls alike: ``"auto"`` (the
default) uses wrtc when it is installed (a dependency wherever wrtc ships a wheel) and the peer's
:class:`~peerpy.network.NetworkPolicy` and configuration can be honoured on it
(:func:`wrtc_unsupported`; address policies can), else aiortc. The two
interoperate, in both offer directions.

Each backend is one object behind the :class:`Backend` Protocol (as anyio's
``_backends``), holding everything specific to it, so no code outside this
package branches on the backend: a connection asks :func:`backend_of` its peer
connection and calls that object.

- this module: the :class:`Backend` Protocol, choosing a backend
  (:func:`resolve_backend`, :func:`choose_backend`), and the event loop;
- :mod:`peerpy.backends.aiortc`: aiortc, with its aioice hooks
  (:mod:`peerpy.backends._aioice`) and its SCTP send path
  (:mod:`peerpy.backends._sctp`);
- :mod:`peerpy.backends.wrtc`: wrtc, imported only when wrtc is used, with the
  SDP filtering it needs (:mod:`peerpy.backends._sdp`, pure) and the track
  adapters of calls (:mod:`peerpy.backends.wrtc_media`).

Imports go one way: the backends import :mod:`peerpy.network` (the pure
policy), :mod:`peerpy.route` and :mod:`peerpy.diagnosis` (value objects);
nothing but this package imports aiortc's or libwebrtc's internals.

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
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar

from ..exceptions import ConfigurationError
from ..network import DEFAULT_UDP_BUFFER_BYTES, NetworkPolicy

if TYPE_CHECKING:
    import asyncio

    from aiortc import (
        MediaStreamTrack,
        RTCConfiguration,
        RTCDataChannel,
        RTCIceCandidate,
        RTCPeerConnection,
        RTCSessionDescription,
    )

    from ..diagnosis import IceSummary
    from ..route import Route
    from ..stats import Report

__all__ = [
    "BACKENDS",
    "ROUTE_DISCLOSURE_WAIT",
    "Backend",
    "BackendName",
    "RouteWait",
    "backend_of",
    "choose_backend",
    "create_peer_connection",
    "explain_backend",
    "fastest_backend",
    "get_backend",
    "loop_options",
    "resolve_backend",
    "run",
    "uvloop_installed",
    "wrtc_installed",
    "wrtc_unsupported",
]

BackendName = Literal["aiortc", "wrtc"]
#: The backends by name; ``"auto"`` picks one of them per peer.
BACKENDS: Final[tuple[BackendName, ...]] = ("aiortc", "wrtc")

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

    libwebrtc sizes its own sockets, so it cannot take ``udp_buffer_bytes``
    other than the default (which is aiortc tuning), and peerpy does not drive
    its relay-only gathering. Addresses are honoured (see
    :mod:`peerpy.backends.wrtc`): only the allowed local candidates are
    signalled, remote candidates are kept only where the kernel routes them
    out of an allowed address, and a route outside the policy is refused.
    """
    if policy.udp_buffer_bytes not in (None, DEFAULT_UDP_BUFFER_BYTES):
        return (
            "NetworkPolicy.udp_buffer_bytes cannot be set on the wrtc backend "
            "(libwebrtc sizes its own sockets); leave it at the default or use backend='aiortc'"
        )
    policy_value = getattr(getattr(configuration, "iceTransportPolicy", None), "value", "all")
    if policy_value != "all":
        return (
            "RTCConfiguration.iceTransportPolicy='relay' is not supported on the wrtc backend; "
            "use backend='aiortc'"
        )
    return None


def choose_backend(
    name: str, configuration: RTCConfiguration, policy: NetworkPolicy
) -> BackendName:
    """The backend a peer asking for ``name`` runs its connections (data and calls) on.

    ``"auto"`` falls back to aiortc when wrtc is absent or cannot honour the
    policy (:func:`wrtc_unsupported`); ``"wrtc"`` raises
    :class:`ConfigurationError` then.
    """
    return explain_backend(name, configuration, policy)[0]


def explain_backend(
    name: str, configuration: RTCConfiguration, policy: NetworkPolicy
) -> tuple[BackendName, str | None]:
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
    reason = wrtc_unsupported(configuration, policy)
    if reason is None:
        return "wrtc", None
    if name == "wrtc":
        raise ConfigurationError(reason)
    return "aiortc", reason


def fastest_backend() -> BackendName:
    """The fastest backend installed (what the CLI uses)."""
    return "wrtc" if wrtc_installed() else "aiortc"


# --- The backend objects ---------------------------------------------------------


class Backend(Protocol):
    """What peerpy asks of a WebRTC backend: one object per backend, no branches elsewhere.

    The peer connection a backend makes has aiortc's API (``webrtc.aiortc``'s
    mirrors it), so :mod:`peerpy.connection` drives both the same way; what
    differs goes through these methods. :func:`backend_of` gives the object
    that made a peer connection, :func:`get_backend` the one for a name.
    """

    @property
    def name(self) -> BackendName:
        """``"aiortc"`` or ``"wrtc"`` (what ``conn.backend`` and ``peer.backend`` say)."""
        ...

    def create_peer_connection(
        self,
        configuration: RTCConfiguration | None,
        policy: NetworkPolicy,
        *,
        remote_gone: float | None = None,
    ) -> RTCPeerConnection:
        """A peer connection following ``policy``, watching for a gone remote if asked.

        A wrtc one is ``webrtc.aiortc``'s ``RTCPeerConnection``, typed as
        aiortc's for the code driving it.
        """
        ...

    def description(self, sdp: str, type: str) -> RTCSessionDescription:
        """A session description this backend's peer connections accept."""
        ...

    def candidate_from_line(self, line: str) -> RTCIceCandidate:
        """Parse a candidate line (without ``candidate:``) for ``addIceCandidate``.

        Raise ``ValueError`` or ``IndexError`` on a malformed line.
        """
        ...

    def local_sdp(self, sdp: str, policy: NetworkPolicy) -> str:
        """The local SDP to send: only the candidates ``policy`` lets the remote learn."""
        ...

    def remote_sdp(self, sdp: str, policy: NetworkPolicy) -> str:
        """The remote SDP to apply (without candidates outside ``policy.remote_networks``)."""
        ...

    def remote_allowed(self, host: str, policy: NetworkPolicy) -> bool:
        """Whether a trickled remote candidate on ``host`` may be added under ``policy``."""
        ...

    def watch_remote(self, pc: RTCPeerConnection, callback: Callable[[float], None]) -> bool:
        """Call ``callback(seconds_silent)`` once ``pc``'s remote is gone; whether ``pc`` watches.

        ``pc`` watches only if made with ``remote_gone`` (``Timeouts.remote_gone``).
        """
        ...

    def route_of(self, pc: RTCPeerConnection) -> Route | None:
        """The candidate pair ``pc`` uses (see :mod:`peerpy.route`); ``None`` before one."""
        ...

    def route_undisclosed(self, pc: RTCPeerConnection, policy: NetworkPolicy) -> bool:
        """Whether ``policy.remote_networks`` cannot be checked yet on ``pc``'s route.

        The connection then waits up to :data:`ROUTE_DISCLOSURE_WAIT` before it opens.
        """
        ...

    def route_refused(self, pc: RTCPeerConnection, policy: NetworkPolicy) -> str | None:
        """Why ``pc``'s selected route breaks ``policy.remote_networks``; ``None`` if not."""
        ...

    def ice_summary(self, pc: RTCPeerConnection) -> IceSummary | None:
        """What ``pc``'s ICE gathered and received (to explain a failure); ``None``: unknown."""
        ...

    def send_high_water(self, requested: int) -> int:
        """The most a data channel may buffer before ``send()`` waits, given ``Limits``'."""
        ...

    def tune_channel(self, channel: RTCDataChannel) -> None:
        """Prepare a data connection's channel (its SCTP transport) for sending.

        Also count its payload bytes for :meth:`stats_report` where the backend
        reports none (aiortc). Called before the channel opens.
        """
        ...

    def add_track(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        """Send ``track`` on ``pc`` (``pc.addTrack``), counting its frames for the stats."""
        ...

    def receive_track(self, track: MediaStreamTrack, max_frames: int) -> MediaStreamTrack:
        """The track the application reads for a remote ``track`` of a call.

        An ``aiortc.MediaStreamTrack`` whose ``recv()`` gives av frames,
        keeping at most ``max_frames`` (aiortc; about a second on wrtc) for a
        reader that falls behind, dropping the oldest. Also count the frames
        decoded and dropped for the stats where the backend reports none.
        """
        ...

    async def stats_report(self, pc: RTCPeerConnection, channel: RTCDataChannel | None) -> Report:
        """``pc``'s stats in the W3C's JSON form (see :mod:`peerpy.stats`), ``channel``'s included.

        Once ``pc`` is closed, its figures as it closed. Cancelling stops
        collecting them.
        """
        ...

    async def raw_stats(self, pc: RTCPeerConnection) -> Mapping[str, Any]:
        """The backend's own full report of ``pc`` (aiortc's or libwebrtc's ``RTCStatsReport``).

        Cancelling stops collecting it.
        """
        ...

    def remote_certificate(self, pc: RTCPeerConnection) -> bytes | None:
        """The certificate (DER) the remote presented in ``pc``'s DTLS handshake.

        ``None`` before the handshake. The transfer's code-authenticated
        handshake binds it (:mod:`peerpy.transfer.auth`): the remote description
        alone does not name it the same way on each backend (libwebrtc keeps one
        of the several fingerprints aiortc advertises).
        """
        ...

    def unacknowledged(self, pc: RTCPeerConnection) -> bool:
        """Whether ``pc``'s SCTP still queues data the remote has not acknowledged.

        Beyond the channel's ``bufferedAmount``; ``False`` where the backend
        cannot tell.
        """
        ...

    @property
    def restarts_ice(self) -> bool:
        """Whether a peer connection can restart ICE (new credentials, same DTLS and SCTP).

        libwebrtc (wrtc) can; aiortc cannot (aiortc#211: its ICE transport
        never starts twice), so resumption makes a new peer connection there.
        """
        ...

    def restart_ice(self, pc: RTCPeerConnection) -> None:
        """Make ``pc``'s next offer restart ICE; only where :attr:`restarts_ice`."""
        ...

    def ice_connected(self, pc: RTCPeerConnection) -> bool:
        """Whether ``pc``'s ICE has a working candidate pair now (the remote heard lately).

        Only where :attr:`restarts_ice`.
        """
        ...


def get_backend(name: BackendName) -> Backend:
    """The backend object for ``name`` (importing it: wrtc only when it is used)."""
    if name == "wrtc":
        from .wrtc import BACKEND as WRTC

        return WRTC
    from .aiortc import BACKEND as AIORTC

    return AIORTC


def backend_of(pc: object) -> Backend:
    """The backend that made ``pc`` (a plain aiortc ``RTCPeerConnection``: aiortc)."""
    name: BackendName = getattr(pc, "_peerpy_backend", "aiortc")
    return get_backend(name)


def create_peer_connection(
    backend: BackendName,
    configuration: RTCConfiguration,
    policy: NetworkPolicy,
    *,
    remote_gone: float | None = None,
) -> RTCPeerConnection:
    """A peer connection of ``backend`` (see :meth:`Backend.create_peer_connection`)."""
    return get_backend(backend).create_peer_connection(
        configuration, policy, remote_gone=remote_gone
    )


#: Seconds a wrtc connection may wait, before it opens, for libwebrtc to disclose a
#: peer-reflexive remote's address (see :meth:`Backend.route_undisclosed`).
ROUTE_DISCLOSURE_WAIT: Final = 5.0


class RouteWait:
    """One connection's wait, before it opens, for its route to be disclosed (wrtc).

    Its policy check (``policy.remote_networks``) needs the selected pair's
    remote address, which wrtc may not know until the remote's trickled
    candidate arrives: the connection then waits, rechecking as candidates
    come, and after :data:`ROUTE_DISCLOSURE_WAIT` seconds ``recheck()`` runs
    once more with no waiting left (the policy check then refuses an
    undisclosed route).
    """

    def __init__(self, recheck: Callable[[], None]) -> None:
        self._recheck = recheck
        self._timer: asyncio.TimerHandle | None = None
        self._over = False  # ROUTE_DISCLOSURE_WAIT has passed

    @property
    def waiting(self) -> bool:
        """Whether the connection waits for its route now."""
        return self._timer is not None

    def needed(
        self, backend: Backend, pc: RTCPeerConnection, policy: NetworkPolicy, *, opening: bool
    ) -> bool:
        """Whether an ``opening`` connection must wait (start the wait); else stop waiting."""
        if opening and not self._over and backend.route_undisclosed(pc, policy):
            if self._timer is None:
                import asyncio  # here: importing the backends stays free of I/O libraries

                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(ROUTE_DISCLOSURE_WAIT, self._expired)
            return True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return False

    def _expired(self) -> None:
        self._timer = None
        self._over = True
        self._recheck()


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
