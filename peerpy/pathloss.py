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

from .connection import Connection
from .keepalive import address_gone

__all__ = ["resume_lost_paths"]


def resume_lost_paths(connections: Iterable[Connection]) -> int:
    """Start resuming each resumable connection whose own address is gone; how many did."""
    started = 0
    for conn in connections:
        if conn._switch is None:
            continue
        route = conn.route
        if conn.reconnecting or not conn.open or route is None or route.local_type != "host":
            continue
        why = address_gone(route.local_address, route.remote_address)
        if why is not None:
            conn._switch.path_gone(f"the path to {conn.peer} is gone: {why}")
            started += 1
    return started
