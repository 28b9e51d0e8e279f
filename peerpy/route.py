"""The route a connection takes: the ICE candidate pair its backend selected.

:class:`Route` is what ``conn.route`` returns once a data or media connection
is open: the types of the local and remote candidates (``host``, ``srflx``,
``prflx``, ``relay``), their addresses, the transport between them and, when a
TURN server relays the traffic, how we reach that server.

>>> route = Route("host", "host", ("10.1.0.2", 40000), ("10.1.0.3", 50000), "udp")
>>> str(route)
'direct, 10.1.0.2:40000 ↔ 10.1.0.3:50000'

A pure value object: each backend reads its own (``Backend.route_of``, in
:mod:`peerpy.backends.aiortc` and :mod:`peerpy.backends.wrtc`).
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["CANDIDATE_TYPES", "Route"]

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
