"""Per-connection network controls, like Pion's ``SettingEngine``: the NetworkPolicy value object.

A :class:`NetworkPolicy` says, for one :class:`~aiortc.RTCPeerConnection`:

- on which local addresses ICE gathers host candidates (aioice's default is every
  interface address except ``127.0.0.1`` and ``::1``; with no other interface
  up, peerpy gathers on ``127.0.0.1`` instead of nothing);
- which remote networks it may talk to: remote candidates outside them, whether
  embedded in the remote SDP or trickled, are ignored, and datagrams arriving
  from outside them (STUN checks and data alike) are dropped;
- how large the UDP socket buffers of the ICE sockets are;
- how long relayed candidate pairs wait for a direct one
  (:mod:`peerpy.relayhold`), so that peers given STUN and TURN connect
  directly whenever they can.

The policy is a pure value object: this module imports nothing of aiortc or
aioice. The aiortc backend applies it through hooks into aioice
(:mod:`peerpy.backends._aioice`: gathering, candidate and datagram filtering,
socket buffers); the wrtc backend filters candidates in the SDP and checks the
selected route (:mod:`peerpy.backends.wrtc`).

:func:`~peerpy.backends.aiortc.create_peer_connection`,
:func:`~peerpy.backends.aiortc.watch_remote`,
:func:`~peerpy.backends.aiortc.ice_sockets` and ``SUPPORTED_BACKENDS`` live in
:mod:`peerpy.backends.aiortc`; they stay importable from here, loaded on first
use.
"""

from __future__ import annotations

import importlib
import ipaddress
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from peerpy.exceptions import BackendVersionError, InvalidAddressError, UsageError
from peerpy.relayhold import DEFAULT_RELAY_HOLD

if TYPE_CHECKING:
    from aiortc import RTCIceCandidate

    from .backends.aiortc import SUPPORTED_BACKENDS as SUPPORTED_BACKENDS
    from .backends.aiortc import create_peer_connection as create_peer_connection
    from .backends.aiortc import ice_sockets as ice_sockets
    from .backends.aiortc import watch_remote as watch_remote

__all__ = [
    "SUPPORTED_BACKENDS",
    "BackendVersionError",
    "InvalidAddressError",
    "NetworkPolicy",
    "create_peer_connection",
    "ice_sockets",
    "remote_candidate_allowed",
    "watch_remote",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Largest socket buffer one may request (the kernel's own limit is INT_MAX / 2).
MAX_UDP_BUFFER_BYTES: Final = 1 << 30
#: Smallest one (below it the kernel silently rounds up anyway).
MIN_UDP_BUFFER_BYTES: Final = 4096


def _as_strings(value: object, field: str) -> tuple[str, ...] | None:
    """Check ``value`` is ``None`` or a non-empty collection of strings."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise InvalidAddressError(
            f"{field} takes a sequence of strings, not a single {type(value).__name__}: "
            f"write ({value!r},) for one entry"
        )
    if not isinstance(value, Iterable):
        raise InvalidAddressError(f"{field} takes a sequence of strings, got {value!r}")
    items = tuple(value)
    if not items:
        raise InvalidAddressError(f"{field} is empty; use None for the default")
    for item in items:
        if not isinstance(item, str):
            raise InvalidAddressError(f"{field} entries must be strings, got {item!r}")
    return items


def _parse_address(text: str) -> IPAddress:
    """Parse one local address literal, rejecting what cannot be a host candidate."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidAddressError(
            f"local address {text!r} is not an IPv4 or IPv6 literal"
        ) from None
    if address.is_unspecified or address.is_multicast:
        raise InvalidAddressError(
            f"local address {text!r} is unspecified or multicast; name one address of this host"
        )
    return address


def _parse_network(text: str) -> IPNetwork:
    """Parse one CIDR or address (a host network); host bits are allowed."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidAddressError(
            f"remote network {text!r} is not a CIDR (like '127.0.0.0/8') or an IP address"
        ) from None


def _convert_local(value: object) -> tuple[str, ...] | None:
    items = _as_strings(value, "local_addresses")
    if items is None:
        return None
    canonical = (str(_parse_address(item)) for item in items)
    return tuple(dict.fromkeys(canonical))


def _convert_remote(value: object) -> tuple[str, ...] | None:
    items = _as_strings(value, "remote_networks")
    if items is None:
        return None
    return tuple(dict.fromkeys(str(_parse_network(item)) for item in items))


def _check_buffer(instance: object, attribute: object, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAddressError(f"udp_buffer_bytes must be an int or None, got {value!r}")
    if not MIN_UDP_BUFFER_BYTES <= value <= MAX_UDP_BUFFER_BYTES:
        raise InvalidAddressError(
            f"udp_buffer_bytes must be between {MIN_UDP_BUFFER_BYTES} and "
            f"{MAX_UDP_BUFFER_BYTES}, got {value}"
        )


def _check_relay_hold(instance: object, attribute: object, value: object) -> None:
    try:
        check_relay_hold(value)
    except UsageError as exc:
        raise InvalidAddressError(str(exc)) from None


#: NetworkPolicy's default UDP socket buffer size (aiortc tuning; wrtc sizes its own).
DEFAULT_UDP_BUFFER_BYTES: Final = 4 * 1024 * 1024


@attrs.frozen
class NetworkPolicy:
    """Where one peer connection's ICE may gather, whom it may talk to, and its buffers.

    Every field accepts ``None`` for "aioice's default". Addresses and networks
    are validated and canonicalised (``"::0001"`` becomes ``"::1"``); invalid ones
    raise :class:`InvalidAddressError`.
    """

    #: Gather host candidates only on these IPs. ``None``: every interface but loopback.
    local_addresses: tuple[str, ...] | None = attrs.field(default=None, converter=_convert_local)
    #: Talk only to remote addresses in these networks. ``None``: any remote.
    remote_networks: tuple[str, ...] | None = attrs.field(default=None, converter=_convert_remote)
    #: Requested SO_RCVBUF and SO_SNDBUF of each ICE socket. ``None``: OS/aioice default.
    udp_buffer_bytes: int | None = attrs.field(
        default=DEFAULT_UDP_BUFFER_BYTES, validator=_check_buffer
    )
    #: Seconds relayed (TURN) candidate pairs wait for a direct pair before they
    #: are checked, on the controlling side (see :mod:`peerpy.relayhold`; Pion's
    #: ``SetRelayAcceptanceMinWait``). ``None``: no wait, the first pair to
    #: succeed wins (aioice's way). aiortc only: libwebrtc prefers direct pairs itself.
    relay_hold: float | None = attrs.field(default=DEFAULT_RELAY_HOLD, validator=_check_relay_hold)

    @classmethod
    def loopback(cls) -> NetworkPolicy:
        """Gather on ``127.0.0.1`` only and talk only to ``127.0.0.0/8`` and ``::1``."""
        return cls(local_addresses=("127.0.0.1",), remote_networks=("127.0.0.0/8", "::1/128"))

    @property
    def needs_hooks(self) -> bool:
        """Whether applying this policy needs the aiortc/aioice hooks at all."""
        return not (
            self.local_addresses is None
            and self.remote_networks is None
            and self.udp_buffer_bytes is None
            and not self.relay_hold
        )


def remote_networks(policy: NetworkPolicy) -> tuple[IPNetwork, ...] | None:
    """``policy.remote_networks`` parsed (``None``: any remote)."""
    if policy.remote_networks is None:
        return None
    return tuple(ipaddress.ip_network(n) for n in policy.remote_networks)


def address_allowed(host: str, networks: tuple[IPNetwork, ...] | None) -> bool:
    """Whether the address literal ``host`` lies in ``networks`` (``None``: anything).

    Hostnames (mDNS ``.local`` names included) are never allowed when networks
    are given. An IPv4-mapped IPv6 address is checked as the IPv4 address.
    """
    if networks is None:
        return True
    try:
        address: IPAddress = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.scope_id is not None:
            address = ipaddress.IPv6Address(int(address))  # drop the %scope
    return any(address in network for network in networks)


def remote_candidate_allowed(candidate: RTCIceCandidate, policy: NetworkPolicy) -> bool:
    """Whether ``policy`` lets a connection use the remote ``candidate``.

    ``True`` for every candidate when ``policy.remote_networks`` is ``None``;
    otherwise only for candidates whose address lies in one of the networks
    (mDNS ``.local`` candidates are refused, see :mod:`peerpy.backends._aioice`).
    """
    return address_allowed(candidate.ip, remote_networks(policy))


def check_remote_gone(value: object) -> None:
    """Raise :class:`UsageError` unless ``value`` is ``None`` or a positive number of seconds."""
    _check_seconds(value, "remote_gone must be a positive number", zero=False)


def check_relay_hold(value: object) -> None:
    """Raise :class:`UsageError` unless ``value`` is ``None`` or a number of seconds >= 0."""
    _check_seconds(value, "relay_hold must be a number >= 0", zero=True)


def _check_seconds(value: object, must: str, *, zero: bool) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        raise UsageError(f"{must} of seconds or None, got {value!r}")


#: What this module used to hold and now re-exports from the aiortc backend.
_MOVED: Final = frozenset(
    {"SUPPORTED_BACKENDS", "create_peer_connection", "ice_sockets", "watch_remote"}
)


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".backends.aiortc", "peerpy"), name)
    globals()[name] = value
    return value
