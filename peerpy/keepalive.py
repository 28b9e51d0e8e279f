"""Is the broker still there?  The schedule of the peer's signaling keepalive (pure).

A broker WebSocket can die without a word: the broker frozen (SIGSTOP, a VM
paused), a link that drops packets, or -- the common case -- our own address
gone (a laptop changed network: a TCP socket bound to an address the host no
longer has never delivers again, and the kernel does not reset it).  TCP
would notice after minutes and websockets' own keepalive after 20-40 s; a
peer with ``auto_reconnect`` must register again within seconds, so that the
connections it resumes can be negotiated through the broker.  Two signs:

With ``gone_after=None`` there are only HEARTBEATs (websockets' own keepalive
watches the socket then).

- **our address is gone**: every :data:`CHECK_EVERY` seconds the socket's
  local address is checked (:func:`address_gone`): no longer the host's, or no
  longer the one the host would reach the broker from (the default route
  switched to another network), means dead;
- **no pong**: a WebSocket ping goes every ``gone_after / 2`` seconds (one at a
  time); one unanswered after ``gone_after`` seconds (``Timeouts.broker_gone``)
  means dead.  So a broker that goes silent is noticed within 1.5 x
  ``gone_after``.

:class:`Keepalive` decides when to send the next ``HEARTBEAT`` (every
``Timeouts.heartbeat``, PeerJS's message), when to ping and when the broker
counts as gone, from times passed in: no clock, no socket (the signaling
session does the sending and asks again at :meth:`Keepalive.next_wake`).
"""

from __future__ import annotations

import errno
import math
import socket
from typing import Final

import attrs

__all__ = ["CHECK_EVERY", "Keepalive", "Tick", "address_gone"]

#: Seconds between two checks of the socket's local address.
CHECK_EVERY: Final = 1.0


@attrs.frozen
class Tick:
    """What to do now."""

    #: Send a ``HEARTBEAT``.
    heartbeat: bool = False
    #: Send a WebSocket ping (none is waiting for its pong).
    ping: bool = False
    #: Check that the socket's local address is still ours.
    check: bool = False
    #: Why the broker counts as gone (``None``: it does not).
    gone: str | None = None


class Keepalive:
    """When to send HEARTBEATs and pings, and whether a pong is overdue (see the module)."""

    def __init__(self, *, heartbeat: float, gone_after: float | None, now: float) -> None:
        self._heartbeat = heartbeat
        self._gone_after = gone_after
        self._next_heartbeat = now + heartbeat
        self._ping_every = gone_after / 2 if gone_after is not None else None
        self._next_ping = now + self._ping_every if self._ping_every is not None else None
        self._ping_sent: float | None = None  # the unanswered ping, if any
        # Without a bound of our own, websockets' keepalive alone watches the socket.
        self._next_check = now + CHECK_EVERY if gone_after is not None else math.inf

    @property
    def waiting(self) -> bool:
        """Whether a ping waits for its pong."""
        return self._ping_sent is not None

    def ponged(self, now: float) -> None:
        """The pong of the waiting ping arrived (by ``now``)."""
        if self._ping_sent is not None and self._ping_every is not None:
            self._ping_sent = None
            self._next_ping = now + self._ping_every

    def tick(self, now: float) -> Tick:
        """What is due at ``now``; the caller then does it (the ping counts as sent)."""
        sent = self._ping_sent
        if sent is not None and self._gone_after is not None and now - sent >= self._gone_after:
            return Tick(gone=f"the broker answered no ping for {now - sent:.1f} s")
        heartbeat = now >= self._next_heartbeat
        if heartbeat:
            self._next_heartbeat = now + self._heartbeat
        ping = sent is None and self._next_ping is not None and now >= self._next_ping
        if ping:
            self._ping_sent = now
            self._next_ping = None
        check = now >= self._next_check
        if check:
            self._next_check = now + CHECK_EVERY
        return Tick(heartbeat=heartbeat, ping=ping, check=check)

    def next_wake(self) -> float:
        """When to call :meth:`tick` next: the earliest of the next heartbeat, ping,
        address check and pong deadline."""
        times = [self._next_heartbeat, self._next_check]
        if self._next_ping is not None:
            times.append(self._next_ping)
        if self._ping_sent is not None and self._gone_after is not None:
            times.append(self._ping_sent + self._gone_after)
        return min(times)


def address_gone(sockname: tuple[object, ...], peername: tuple[object, ...]) -> str | None:
    """Why a socket from ``sockname`` to ``peername`` no longer reaches its remote, or ``None``.

    Gone when ``sockname``'s address is no longer one of this host's (a UDP
    socket cannot bind to it: ``EADDRNOTAVAIL``), or when the host would now
    reach ``peername`` from another address (a UDP socket connected to it, so
    only a route look-up, no packet: the default route was switched to
    another network, where replies to the old address cannot come back).
    Anything else -- no route at all (a link down), another error -- counts
    as not gone: nothing is known, and the ping still watches.  With
    ``net.ipv4.ip_nonlocal_bind`` set the bind always succeeds.
    """
    host, remote = sockname[0], peername[0]
    if not isinstance(host, str) or not isinstance(remote, str):
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    extra = sockname[2:4] if family == socket.AF_INET6 else ()
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0, *extra))
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"our address {host} is gone"
        return None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((remote, 9, *peername[2:4]))
            source = probe.getsockname()[0]
    except OSError:
        return None
    if source != host:
        return f"the route to the broker now leaves from {source}, not from our {host}"
    return None
