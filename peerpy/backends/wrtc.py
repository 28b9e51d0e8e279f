"""The wrtc backend: libwebrtc through ``webrtc.aiortc``, wrtc's aiortc-compatible layer.

Imported only when a peer uses wrtc (see :mod:`peerpy.backends`). wrtc's own
``[aiortc]`` extra is not needed: the layer imports av and pyee, which aiortc
already brings.

What peerpy adds on top:

- Loopback: libwebrtc skips loopback interfaces unless ``allow_loopback()``
  was called before the first connection of the process; peerpy calls it
  before its first wrtc connection if that connection may need loopback (its
  ``local_addresses`` are set, or it has no ICE servers, as on an offline
  machine), and :meth:`WrtcBackend.local_sdp` advertises only the candidates
  the policy allows (none on loopback when ``local_addresses`` is ``None``,
  as with aiortc). With loopback allowed and STUN or TURN configured,
  libwebrtc's gathering waits about 5 s for the loopback candidate's server
  queries, which cannot succeed (measured in the NAT lab: 5.2 s to open on a
  LAN, 10.3 s across two NATs, against 0.03 s and 0.12 s without).
- ``local_addresses``: libwebrtc gathers on every interface and offers no
  per-connection way to stop it (wrtc exposes no network ignore list or
  mask; its field trials hold none; ``allow_loopback()`` is process-wide and
  only adds loopback). peerpy confines it from the outside, in three steps:
  only candidates on the allowed addresses are signalled
  (:meth:`WrtcBackend.local_sdp`), so the remote sends only to them; remote
  candidates are kept only when the kernel would send to them from an allowed
  address (:func:`source_address`: a connected UDP socket, no packet sent),
  so every check libwebrtc sends, from whichever of its sockets, is routed
  out of an allowed interface; and a selected pair whose local host address
  or remote lies outside the policy is refused before the connection opens
  (:meth:`WrtcBackend.route_refused`). What stays: libwebrtc's checks from
  its other sockets leave through the allowed interface with another source
  address, and a check arriving from an address routed elsewhere (a
  peer-reflexive remote) is answered by libwebrtc itself.
- ``remote_networks``: remote candidates outside them are dropped from the
  remote SDP (:meth:`WrtcBackend.remote_sdp`) and when trickled; since
  libwebrtc may still pair with a peer-reflexive remote, the selected route is
  checked before the connection opens (:meth:`WrtcBackend.route_refused`).
- ``Timeouts.remote_gone``: libwebrtc checks consent itself on its network
  thread (so a stalled Python event loop never condemns a healthy remote), and
  reports its ICE connection ``"disconnected"`` (which ``webrtc.aiortc``
  shows as ``"completed"``, like aiortc) once the remote has not been
  heard for about 5 s, ``"failed"`` 30 s later. peerpy times ``remote_gone``
  from that ``"disconnected"`` (counting the 5 s already silent) and reports
  the remote gone when ICE has not recovered by then; so on wrtc a
  ``remote_gone`` below 5 s acts as about 5 s.
- Calls: :mod:`peerpy.backends.wrtc_media` adapts an application's aiortc
  tracks to the layer's senders (``addTrack``/``addTransceiver`` here take
  them) and the remote tracks to aiortc's ``MediaStreamTrack``
  (:meth:`WrtcBackend.receive_track`); libwebrtc encodes and decodes.
- ICE restart: ``restartIce()`` on libwebrtc's peer connection makes the
  next offer carry new ICE credentials (``a=ice-ufrag``) and gathers new
  candidates, while its DTLS and SCTP associations, and so the data channel,
  go on (:meth:`WrtcBackend.restart_ice`); resumption between two wrtc peers
  tries that first (:mod:`peerpy.icerestart`). The layer shows libwebrtc's
  ICE "disconnected" as "completed", so :meth:`WrtcBackend.ice_connected`
  reads libwebrtc's own state.
- ``conn.route``: the selected pair of the data transport, from libwebrtc's
  ``RTCIceTransport.getSelectedCandidatePair()``.
- Stats: libwebrtc's report is the W3C's (``webrtc.RTCStatsReport``, every
  member of the specification it fills), so :meth:`WrtcBackend.stats_report`
  takes its JSON form; a connection closing keeps its last report (taken in
  ``close()``, as libwebrtc gives none once closed), and a data channel's
  bytes are peerpy's counts once libwebrtc dropped the closed channel
  (:mod:`peerpy.backends._channel_stats`).
- The 16 MiB send queue: libwebrtc refuses sends beyond 16 MiB buffered;
  ``Limits.send_high_water`` is capped at :data:`HIGH_WATER`
  (:meth:`WrtcBackend.send_high_water`), so a peerpy ``send()`` waits instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import webrtc
from aiortc.exceptions import InvalidStateError
from webrtc.aiortc import RTCConfiguration as WrtcConfiguration
from webrtc.aiortc import RTCIceServer as WrtcIceServer
from webrtc.aiortc import RTCPeerConnection as WrtcPeerConnection
from webrtc.aiortc import RTCSessionDescription as WrtcDescription
from webrtc.aiortc.sdp import candidate_from_sdp as wrtc_candidate

from ..diagnosis import IceSummary
from ..exceptions import ConfigurationError
from ..network import NetworkPolicy, address_allowed, check_remote_gone, remote_networks
from ..route import Route
from . import _channel_stats, _sdp, wrtc_media

if TYPE_CHECKING:
    # The types of the API both backends share (webrtc.aiortc's mirror them).
    import aiortc

    from ..stats import Report

__all__ = [
    "BACKEND",
    "WrtcBackend",
    "create_peer_connection",
    "route_of",
    "source_address",
    "watch_remote",
]

T = TypeVar("T")

#: Seconds libwebrtc takes, without hearing the remote, to report ICE "disconnected"
#: (measured: 5.0-5.2 s after the remote froze, libwebrtc M152 defaults).
DISCONNECT_AFTER: Final = 5.0
#: libwebrtc refuses a send when this many bytes are buffered in a channel.
SEND_QUEUE_LIMIT: Final = 16 * 1024 * 1024
#: The most a wrtc data channel buffers before send() waits: well below SEND_QUEUE_LIMIT.
HIGH_WATER: Final = 8 * 1024 * 1024

#: Seconds an ICE restart's description waits for its new candidates (the layer's own bound).
GATHERING_WAIT: Final = 5.0
#: Seconds between two reads of libwebrtc's state while an ICE restart goes on.
POLL: Final = 0.02

#: Seconds closing a call waits for its senders to stop between frames.
FEEDS_DRAIN: Final = 1.0
#: Seconds a closing connection waits for libwebrtc's last stats report.
FINAL_STATS_WAIT: Final = 1.0

#: libwebrtc's ICE connection states with a working candidate pair.
CONNECTED: Final = ("connected", "completed")

#: The host of a remote address libwebrtc does not disclose (peer-reflexive candidates).
HIDDEN: Final = "?"

_loopback: bool | None = None  # whether allow_loopback() succeeded, once tried


def _allow_loopback() -> bool:
    global _loopback
    if _loopback is None:
        try:
            webrtc.allow_loopback()
            _loopback = True
        except Exception:  # a connection was made before: too late for this process
            _loopback = False
    return _loopback


class _PeerConnection(WrtcPeerConnection):  # type: ignore[misc]
    """``webrtc.aiortc``'s peer connection, watching for a gone remote."""

    _peerpy_backend = "wrtc"

    def __init__(self, configuration: Any, remote_gone: float | None) -> None:
        super().__init__(configuration)
        self._peerpy_remote_gone = remote_gone
        self._peerpy_on_gone: Callable[[float], None] | None = None
        self._peerpy_timer: asyncio.TimerHandle | None = None
        self._peerpy_since = 0.0
        #: libwebrtc's track ids (in its stats) -> those the application sees.
        self._peerpy_track_ids: dict[str, str] = {}
        self.on("track", self._peerpy_received)
        self._peerpy_final: webrtc.RTCStatsReport | None = None  # the report as it closed
        if remote_gone is not None:
            # Binds the layer to libwebrtc's ICE state events (see _emit_ice_state).
            self.on("iceconnectionstatechange", _ignore)

    def _emit_ice_state(self) -> None:
        # The layer runs this on each of libwebrtc's ICE state changes; it
        # reports "disconnected" as "completed", as aiortc has no such state.
        super()._emit_ice_state()
        if self._peerpy_remote_gone is not None:
            self._peerpy_ice_changed()

    def _native_ice_state(self) -> str:
        return _text(self._native.ice_connection_state)

    def _peerpy_ice_changed(self) -> None:
        state = self._native_ice_state()
        if state == "disconnected" and self._peerpy_timer is None:
            assert self._peerpy_remote_gone is not None
            self._peerpy_since = time.monotonic() - DISCONNECT_AFTER
            delay = max(0.0, self._peerpy_remote_gone - DISCONNECT_AFTER)
            self._peerpy_timer = asyncio.get_running_loop().call_later(delay, self._peerpy_gone)
        elif state != "disconnected" and self._peerpy_timer is not None:
            self._peerpy_timer.cancel()
            self._peerpy_timer = None

    def _peerpy_gone(self) -> None:
        self._peerpy_timer = None
        if self._peerpy_on_gone is not None and self._native_ice_state() == "disconnected":
            self._peerpy_on_gone(time.monotonic() - self._peerpy_since)

    async def setLocalDescription(self, sessionDescription: Any = None) -> None:
        # After an ICE restart the layer reads the last gathering's "complete" and
        # returns before the new gathering starts: wait for the new candidates.
        before = _ufrag(self._native.local_description)
        await self._peerpy_operation(super().setLocalDescription(sessionDescription))
        if before is not None and _ufrag(self._native.local_description) != before:
            await _until(self._peerpy_gathered, GATHERING_WAIT)

    async def setRemoteDescription(self, sessionDescription: Any) -> None:
        await self._peerpy_operation(super().setRemoteDescription(sessionDescription))

    async def createOffer(self) -> Any:
        return await self._peerpy_operation(super().createOffer())

    async def createAnswer(self) -> Any:
        return await self._peerpy_operation(super().createAnswer())

    async def _peerpy_operation(self, operation: Awaitable[T]) -> T:
        """``operation``, with wrtc's cancellation of it on a closed peer connection
        raised as an error: wrtc raises a bare ``CancelledError`` into the awaiting
        task then, which would cancel the caller's whole task group (a peer)."""
        try:
            return await operation
        except asyncio.CancelledError:
            if _cancelled_by_caller() or not _is_closed(self):
                raise
            raise InvalidStateError("RTCPeerConnection is closed") from None

    def _peerpy_gathered(self) -> bool:
        native = self._native
        return _text(native.ice_gathering_state) == "complete" and (
            "\na=candidate:" in native.local_description.sdp
        )

    def addTrack(self, track: Any) -> Any:
        # An application's aiortc track goes through a feed (see wrtc_media).
        sender = super().addTrack(wrtc_media.feed(track))
        self._peerpy_sent(sender)
        return sender

    def addTransceiver(self, trackOrKind: Any, direction: str = "sendrecv") -> Any:
        transceiver = super().addTransceiver(wrtc_media.feed(trackOrKind), direction)
        self._peerpy_sent(transceiver.sender)
        return transceiver

    def _peerpy_received(self, track: Any) -> None:
        native = getattr(track, "_native", None)
        if native is not None:
            self._peerpy_track_ids[str(native.id)] = track.id

    def _peerpy_sent(self, sender: Any) -> None:
        # libwebrtc's stats name the generator's track: remember the application's id.
        native = getattr(getattr(sender, "_native", None), "track", None)
        if native is not None and sender.track is not None:
            self._peerpy_track_ids[str(native.id)] = sender.track.id

    async def close(self) -> None:
        if self._peerpy_timer is not None:
            self._peerpy_timer.cancel()
            self._peerpy_timer = None
        if self._peerpy_final is None and self.connectionState != "closed":
            # libwebrtc reports nothing once closed: keep the last figures
            # (if it cannot give them, closing goes on without).
            with contextlib.suppress(Exception):
                self._peerpy_final = await asyncio.wait_for(
                    self._native.get_stats(), FINAL_STATS_WAIT
                )
        if self.connectionState != "closed":
            # The senders' pumps stop between frames, not in the middle of one.
            await wrtc_media.drain([s.track for s in self.getSenders()], FEEDS_DRAIN)
        await super().close()

    async def _peerpy_stats(self) -> webrtc.RTCStatsReport:
        if self._peerpy_final is not None:
            return self._peerpy_final
        if self.connectionState == "closed":  # closed before a report could be kept
            return webrtc.RTCStatsReport({})
        return await self._native.get_stats()


def _ignore() -> None:
    pass


def _cancelled_by_caller() -> bool:
    """Whether the current task was cancelled by its own scope (Python 3.11+ counts it);
    on 3.10, which cannot tell, every cancellation counts as the caller's."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def _is_closed(pc: Any) -> bool:
    return "closed" in (pc.connectionState, pc.signalingState)


async def _until(done: Callable[[], bool], limit: float | None = None) -> bool:
    """Poll ``done()`` until true (``limit`` s at most); whether it became true.

    Polled, not awaited on an event: libwebrtc's events reach Python through
    wrtc's mailbox, which (measured) held an ICE restart's gathering events
    for as long as the code its description resumed waited on a plain future.
    Cancelling stops polling.
    """
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    while not done():
        if deadline is not None and loop.time() >= deadline:
            return False
        await asyncio.sleep(POLL)
    return True


def _ufrag(description: Any) -> str | None:
    """The first ICE username fragment of a libwebrtc description (``None``: no description)."""
    if description is None:
        return None
    found = re.search(r"\na=ice-ufrag:(\S+)", description.sdp)
    return found.group(1) if found else ""


def create_peer_connection(
    configuration: aiortc.RTCConfiguration | None,
    policy: NetworkPolicy,
    *,
    remote_gone: float | None = None,
) -> aiortc.RTCPeerConnection:
    """A wrtc peer connection for ``policy`` (checked by ``peerpy.backends.wrtc_unsupported``)."""
    check_remote_gone(remote_gone)
    servers = [] if configuration is None else list(configuration.iceServers or [])
    loopback = any(ipaddress.ip_address(a).is_loopback for a in policy.local_addresses or ())
    # Allowing loopback stalls gathering with ICE servers (see above): only when needed.
    allowed = _allow_loopback() if loopback or not servers else False
    if loopback and not allowed:
        raise ConfigurationError(
            "NetworkPolicy.local_addresses: wrtc gathers loopback candidates only if "
            "allowed before the process's first wrtc connection (WRTC_ALLOW_LOOPBACK=1)"
        )
    native = WrtcConfiguration(
        iceServers=[WrtcIceServer(s.urls, s.username, s.credential) for s in servers]
    )
    return _PeerConnection(native, remote_gone)


def watch_remote(pc: aiortc.RTCPeerConnection, callback: Callable[[float], None]) -> bool:
    """Like :func:`peerpy.backends.aiortc.watch_remote`, for a wrtc peer connection."""
    if not isinstance(pc, _PeerConnection) or pc._peerpy_remote_gone is None:
        return False
    pc._peerpy_on_gone = callback
    return True


def _text(value: object) -> str:
    return str(getattr(value, "value", value)).lower()


def route_of(pc: aiortc.RTCPeerConnection) -> Route | None:
    """The selected pair of ``pc``'s data transport; ``None`` before one is selected."""
    sctp = pc.sctp
    native = getattr(getattr(getattr(sctp, "transport", None), "transport", None), "_native", None)
    if native is None:
        return None
    try:
        pair = native.get_selected_candidate_pair()
    except Exception:  # closed
        return None
    if pair is None:
        return None
    local, remote = pair.local, pair.remote
    relay_protocol = relay_server = None
    if _text(local.type) == "relay":
        relay_protocol = _text(local.relay_protocol) if local.relay_protocol else None
        url = getattr(local, "url", None)
        if url:
            host, _, port = str(url).split(":", 1)[-1].split("?")[0].rpartition(":")
            if port.isdigit():
                relay_server = (host.strip("[]"), int(port))
    return Route(
        local_type=_text(local.type),
        remote_type=_text(remote.type),
        local_address=(str(local.address), int(local.port)),
        # libwebrtc hides a peer-reflexive remote's address (as browsers do).
        remote_address=(
            HIDDEN if remote.address is None else str(remote.address),
            int(remote.port),
        ),
        protocol=_text(local.protocol),
        relay_protocol=relay_protocol,
        relay_server=relay_server,
    )


def source_address(host: str) -> str | None:
    """The local address the kernel would send from to reach ``host``; ``None``: no route.

    Connecting a UDP socket sends nothing: the kernel only looks up the route
    (and picks its source address, that of the outgoing interface).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a hostname (mDNS): its route cannot be told
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(address), 9))
        except OSError:
            return None
        local = str(probe.getsockname()[0]).split("%")[0]
    return str(ipaddress.ip_address(local))


def _remote_of(route: Route) -> str:
    """The remote address of ``route``, or :data:`HIDDEN`, as far as the policy is concerned.

    A peer-reflexive remote libwebrtc does not disclose is on this machine when
    the pair's local end is a loopback host candidate: only this host can send
    to a loopback address (Linux, macOS and Windows drop such packets arriving
    from outside). Such a remote counts as ``127.0.0.1``.
    """
    host = route.remote_address[0]
    if host == HIDDEN and route.local_type == "host":
        local = ipaddress.ip_address(route.local_address[0])
        if local.is_loopback:
            return "127.0.0.1" if local.version == 4 else "::1"
    return host


def _routed(policy: NetworkPolicy) -> Callable[[str], bool] | None:
    """Whether a remote address is reached from ``policy.local_addresses`` (``None``: any)."""
    allowed = policy.local_addresses
    if allowed is None:
        return None
    return lambda host: source_address(host) in allowed


class WrtcBackend:
    """The :class:`~peerpy.backends.Backend` of wrtc (use :data:`BACKEND`)."""

    name: Final[Literal["wrtc"]] = "wrtc"

    create_peer_connection = staticmethod(create_peer_connection)

    def description(self, sdp: str, type: str) -> aiortc.RTCSessionDescription:
        return WrtcDescription(sdp=sdp, type=type)  # type: ignore[no-any-return]

    def candidate_from_line(self, line: str) -> aiortc.RTCIceCandidate:
        return wrtc_candidate(line)  # type: ignore[no-any-return]

    def local_sdp(self, sdp: str, policy: NetworkPolicy) -> str:
        return _sdp.local_candidates(sdp, policy)

    def remote_sdp(self, sdp: str, policy: NetworkPolicy) -> str:
        return _sdp.remote_candidates(sdp, policy, _routed(policy))

    def remote_allowed(self, host: str, policy: NetworkPolicy) -> bool:
        routed = _routed(policy)
        return address_allowed(host, remote_networks(policy)) and (routed is None or routed(host))

    watch_remote = staticmethod(watch_remote)
    route_of = staticmethod(route_of)

    def route_undisclosed(self, pc: aiortc.RTCPeerConnection, policy: NetworkPolicy) -> bool:
        """Whether the policy's addresses cannot be checked yet on ``pc``'s route.

        When the remote's connectivity checks arrive before its trickled
        candidate (a browser trickles its candidates after the OFFER, through
        the broker), libwebrtc selects a peer-reflexive remote whose address it
        does not disclose; it does once that candidate is added. The
        connection waits for it (up to ``ROUTE_DISCLOSURE_WAIT``) before it
        opens, instead of refusing a route it cannot see yet.
        """
        if policy.remote_networks is None and policy.local_addresses is None:
            return False
        route = route_of(pc)
        return route is not None and _remote_of(route) == HIDDEN

    def route_refused(self, pc: aiortc.RTCPeerConnection, policy: NetworkPolicy) -> str | None:
        """Why ``pc``'s route breaks ``policy``'s addresses; ``None`` if it does not.

        libwebrtc may pair with a peer-reflexive candidate (learnt from a check
        the remote sent), whose address it does not even disclose; aiortc's
        hooks drop such packets instead. With ``local_addresses``, the remote
        must be one the kernel reaches from an allowed address (so packets
        leave through an allowed interface): the local end of the pair may be
        another of libwebrtc's sockets (it gathers on every interface), whose
        packets the kernel then routes out of that allowed interface too.
        """
        if policy.remote_networks is None and policy.local_addresses is None:
            return None
        route = route_of(pc)
        if route is None:
            return None
        host = _remote_of(route)
        routed = _routed(policy)
        if address_allowed(host, remote_networks(policy)) and (routed is None or routed(host)):
            return None
        shown = "an undisclosed peer-reflexive address" if host == HIDDEN else host
        field = "remote_networks" if policy.remote_networks is not None else "local_addresses"
        return (
            f"the route goes to {shown}, outside NetworkPolicy.{field} "
            "(on wrtc, peerpy can only check the route once selected)"
        )

    def ice_summary(self, pc: aiortc.RTCPeerConnection) -> IceSummary | None:
        return None  # libwebrtc discloses no candidate lists

    def send_high_water(self, requested: int) -> int:
        # libwebrtc refuses sends beyond 16 MiB buffered: wait well before.
        return min(requested, HIGH_WATER)

    def tune_channel(self, channel: aiortc.RTCDataChannel) -> None:
        # libwebrtc's SCTP needs nothing; its stats drop the channel once closed.
        _channel_stats.count_channel(channel)

    def remote_certificate(self, pc: aiortc.RTCPeerConnection) -> bytes | None:
        native = getattr(getattr(pc.sctp, "transport", None), "_native", None)
        chain = native.getRemoteCertificates() if native is not None else None
        return bytes(chain[0]) if chain else None  # the leaf first

    def unacknowledged(self, pc: aiortc.RTCPeerConnection) -> bool:
        return False  # libwebrtc does not expose its SCTP queues

    #: libwebrtc restarts ICE on a live peer connection (its DTLS and SCTP go on).
    restarts_ice: Final = True

    def restart_ice(self, pc: aiortc.RTCPeerConnection) -> None:
        pc._native.restart_ice()  # type: ignore[attr-defined]

    def ice_connected(self, pc: aiortc.RTCPeerConnection) -> bool:
        """libwebrtc's own ICE state (the layer shows "disconnected" as "completed")."""
        return _text(pc._native.ice_connection_state) in CONNECTED  # type: ignore[attr-defined]

    def add_track(self, pc: aiortc.RTCPeerConnection, track: aiortc.MediaStreamTrack) -> None:
        pc.addTrack(track)  # through a feed (_PeerConnection.addTrack); libwebrtc counts frames

    def receive_track(
        self, track: aiortc.MediaStreamTrack, max_frames: int
    ) -> aiortc.MediaStreamTrack:
        """``track`` as an aiortc track; libwebrtc keeps about a second, not ``max_frames``.

        libwebrtc counts its frames itself. See :mod:`peerpy.backends.wrtc_media`.
        """
        return wrtc_media.received(track)

    async def stats_report(
        self, pc: aiortc.RTCPeerConnection, channel: aiortc.RTCDataChannel | None
    ) -> Report:
        report = await self.raw_stats(pc)
        entries = {stats_id: stats.to_json() for stats_id, stats in report.items()}
        if isinstance(pc, _PeerConnection):
            wrtc_media.name_tracks(entries, pc._peerpy_track_ids)
        # libwebrtc reports a data channel until it closes; peerpy's counts after.
        counted = _channel_stats.channel_entry(channel)
        if counted is not None and not any(
            entry.get("type") == "data-channel" and entry.get("label") == counted["label"]
            for entry in entries.values()
        ):
            entries[counted["id"]] = counted
        return entries

    async def raw_stats(self, pc: aiortc.RTCPeerConnection) -> Mapping[str, Any]:
        if isinstance(pc, _PeerConnection):
            report: Mapping[str, Any] = await pc._peerpy_stats()
        else:
            report = await pc._native.get_stats()  # type: ignore[attr-defined]
        return report


#: The wrtc backend.
BACKEND: Final = WrtcBackend()
