"""The route a connection takes: the ICE candidate pair aioice selected.

:class:`Route` is what ``conn.route`` returns once a data or media connection
is open: the types of the local and remote candidates (``host``, ``srflx``,
``prflx``, ``relay``), their addresses, the transport between them and, when a
TURN server relays the traffic, how we reach that server.

>>> route = Route("host", "host", ("10.1.0.2", 40000), ("10.1.0.3", 50000), "udp")
>>> str(route)
'direct, 10.1.0.2:40000 ↔ 10.1.0.3:50000'

aiortc exposes no selected pair, so :func:`route_of` reads it from aioice's
``Connection`` (its ``_nominated`` pairs, present in aioice 0.10 and 0.13);
like :mod:`peerpy.network`, this is the only other place that reads aioice
internals, and it returns ``None`` rather than failing if they change.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
from aiortc import RTCPeerConnection

__all__ = ["CANDIDATE_TYPES", "Route", "route_of"]

#: The ICE candidate types (RFC 8445 §5.1.1).
CANDIDATE_TYPES: Final = ("host", "srflx", "prflx", "relay")

Address = tuple[str, int]


@attrs.frozen
class Route:
    """The candidate pair a connection uses, as seen from this side."""

    #: Our candidate's type: ``host``, ``srflx``, ``prflx`` or ``relay``.
    local_type: str
    #: The remote candidate's type (``prflx``: learnt from a check it sent).
    remote_type: str
    #: Our candidate's address: for ``relay``, the address the TURN server
    #: relays from; for ``srflx``, the address our NAT maps us to.
    local_address: Address
    #: Where we send to: the remote candidate's address.
    remote_address: Address
    #: The candidate pair's transport (``udp``; aioice pairs UDP candidates only).
    protocol: str
    #: For a ``relay`` local candidate: how we reach the TURN server (``udp``/``tcp``).
    relay_protocol: str | None = None
    #: For a ``relay`` local candidate: the TURN server's address.
    relay_server: Address | None = None

    @property
    def relayed(self) -> bool:
        """Whether a TURN server relays the traffic (ours, the remote's or both)."""
        return self.local_type == "relay" or self.remote_type == "relay"

    def __str__(self) -> str:
        if self.local_type == "relay":
            server = _format(self.relay_server) if self.relay_server else "?"
            return f"relayed via TURN {server} ({self.relay_protocol or self.protocol})"
        if self.remote_type == "relay":
            return f"relayed via the remote's TURN relay {_format(self.remote_address)}"
        return f"direct, {_format(self.local_address)} ↔ {_format(self.remote_address)}"


def _format(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice connections of ``pc``'s ICE transports (one when bundled)."""
    transports = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None:
            transports.append(dtls.transport)
    if pc.sctp is not None:
        transports.append(pc.sctp.transport.transport)
    connections = (getattr(t.iceGatherer, "_connection", None) for t in transports)
    return list(dict.fromkeys(c for c in connections if c is not None))


def route_of(pc: RTCPeerConnection) -> Route | None:
    """The selected pair of ``pc``'s first ICE transport; ``None`` before one is selected."""
    for connection in _ice_connections(pc):
        nominated = getattr(connection, "_nominated", None)
        pair = nominated.get(1) if isinstance(nominated, dict) else None
        if pair is None:
            continue
        local = pair.local_candidate
        remote = pair.remote_candidate
        relay_protocol = relay_server = None
        if local.type == "relay":
            relay_protocol = getattr(connection, "turn_transport", None)
            server = getattr(connection, "turn_server", None)
            if isinstance(server, tuple) and len(server) == 2:
                relay_server = (str(server[0]), int(server[1]))
        return Route(
            local_type=str(local.type),
            remote_type=str(remote.type),
            local_address=(str(local.host), int(local.port)),
            remote_address=(str(remote.host), int(remote.port)),
            protocol=str(local.transport).lower(),
            relay_protocol=relay_protocol,
            relay_server=relay_server,
        )
    return None
