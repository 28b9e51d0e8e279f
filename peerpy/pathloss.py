"""Our own address went away: resume the connections whose path used it, at once.

When the peer's broker session ends (:mod:`peerpy.session`; the keepalive of
:mod:`peerpy.keepalive` notices a gone address within about a second), the
same may have happened to the paths of its resumable connections.  ICE
would notice only after ``Timeouts.remote_gone`` (and the remote, whose own
address did not change, sees a silence it cannot tell from a frozen peer).
:func:`resume_lost_paths` checks each open resumable connection whose route
starts from one of our host addresses with
:func:`~peerpy.keepalive.address_gone`; one whose address is gone, or from
which the host would no longer reach the remote, starts resuming now, as a
network change (:attr:`peerpy.DataConnection.network_change`).  Its new
generation's signaling waits in the queue until the peer registered again.

Routes that do not start from a host candidate (server-reflexive, relayed)
do not name our own address: they are left to ICE.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .keepalive import address_gone

if TYPE_CHECKING:
    from .connection import Connection
    from .route import Route

__all__ = ["resume_lost_paths", "route_gone"]


def route_gone(route: Route | None) -> str | None:
    """Why ``route`` leaves from a host address that is no longer ours (or no longer the
    one the host reaches its remote from), or ``None`` (also for routes that do not
    start from a host candidate: they do not name our own address)."""
    if route is None or route.local_type != "host":
        return None
    return address_gone(route.local_address, route.remote_address)


def resume_lost_paths(connections: Iterable[Connection]) -> int:
    """Start resuming each resumable connection whose own address is gone; how many did."""
    started = 0
    for conn in connections:
        if conn._switch is None:
            continue
        if conn.reconnecting or not conn.open:
            continue
        why = route_gone(conn.route)
        if why is not None:
            conn._switch.path_gone(f"the path to {conn.peer} is gone: {why}")
            started += 1
    return started
