"""The ICE servers a Peer takes from its broker: fetched, retried once, kept fresh.

When no ICE servers are configured (see :func:`peerpy.config.resolve_ice`), a
:class:`~peerpy.peer.Peer` asks its broker for them once registered (``GET
{path}{key}/ice``, :meth:`peerpy.signaling.Signaling.fetch_ice_servers`).
:class:`BrokerIce` owns that:

- a refused request (401: behind a load balancer the request may reach an
  instance that does not know our id yet; 429; 503) is logged at WARNING and
  tried once more after :data:`RETRY_DELAY`; a second refusal leaves the peer
  without the broker's STUN/TURN, said at WARNING too.  A broker without the
  endpoint (``peer`` 1.0.2) is not a refusal: no servers, logged at DEBUG.
- TURN credentials are short-lived (the broker's ``--turn-ttl``, an hour by
  default).  Their ``username`` carries their expiry (``<unix time>:<id>``,
  coturn's REST-API scheme); :func:`refresh_delay` picks when to fetch new ones
  (:data:`REFRESH_AT` of the time left), so every new connection is made with
  valid credentials.  Connections already made keep theirs: TURN allocations
  are refreshed by the TURN client itself, and coturn only checks the
  credential when an allocation is created.

The schedule (:func:`expiry_of`, :func:`refresh_delay`) is pure; the clock is
an argument (wall-clock seconds, as the expiry is).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import anyio
from aiortc import RTCConfiguration, RTCIceServer

from .exceptions import NetworkError, ServerError

__all__ = [
    "MIN_DELAY",
    "REFRESH_AT",
    "RETRY_DELAY",
    "BrokerIce",
    "Host",
    "expiry_of",
    "refresh_delay",
]

#: Seconds before the one retry of a refused request.
RETRY_DELAY: Final = 0.5
#: Credentials are fetched again after this share of the time they had left.
REFRESH_AT: Final = 0.8
#: Never fetch again sooner than this (seconds).
MIN_DELAY: Final = 1.0
#: When credentials look expired already (our clock is ahead of the broker's,
#: or the last refresh failed): seconds until the next try.
STALE_DELAY: Final = 60.0


def expiry_of(servers: Sequence[RTCIceServer]) -> float | None:
    """The earliest expiry (Unix seconds) among the servers' REST-API usernames, if any."""
    expiries = []
    for server in servers:
        stamp, colon, _ = (server.username or "").partition(":")
        if colon and stamp.isdigit():
            expiries.append(float(stamp))
    return min(expiries, default=None)


def refresh_delay(servers: Sequence[RTCIceServer], now: float) -> float | None:
    """Seconds until ``servers`` should be fetched again; ``None`` if nothing expires."""
    expiry = expiry_of(servers)
    if expiry is None:
        return None
    left = expiry - now
    if left <= MIN_DELAY:
        return STALE_DELAY if left <= 0 else MIN_DELAY
    return max(MIN_DELAY, left * REFRESH_AT)


class Host(Protocol):
    """What :class:`BrokerIce` changes on its :class:`~peerpy.peer.Peer`."""

    #: The configuration new connections are made with.
    configuration: RTCConfiguration


class BrokerIce:
    """The broker's ICE servers for one peer (see the module docstring).

    ``fetch()`` asks the broker (raising :class:`ServerError` on a refusal,
    :class:`NetworkError` if it is unreachable); the servers go to
    ``host.configuration``, which new connections use; ``clock()`` is
    wall-clock time.
    """

    def __init__(
        self,
        host: Host,
        fetch: Callable[[], Awaitable[list[RTCIceServer]]],
        logger: logging.Logger,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host = host
        self._fetch = fetch
        self._log = logger
        self._clock = clock
        self._servers: list[RTCIceServer] = []

    async def start(self) -> None:
        """Fetch the servers once (one retry after a refusal) and use them.

        Cancelling abandons the request; the peer keeps the servers it had.
        """
        self._use(await self._get() or [])

    async def keep_fresh(self) -> None:
        """Fetch new servers before the TURN credentials expire, forever.

        Returns at once if the servers carry no expiring credentials.  A failed
        refresh keeps the servers in use and tries again later.  Cancelling
        stops the refreshes.
        """
        while (delay := refresh_delay(self._servers, self._clock())) is not None:
            await anyio.sleep(delay)
            servers = await self._get()
            if servers is not None:
                self._use(servers)
                self._log.debug("ICE servers from the broker refreshed")

    def _use(self, servers: list[RTCIceServer]) -> None:
        self._servers = servers
        self._host.configuration = RTCConfiguration(iceServers=servers)

    async def _get(self) -> list[RTCIceServer] | None:
        """The broker's answer, asked again once after a refusal; ``None`` if refused twice."""
        try:
            try:
                return await self._fetch()
            except ServerError as exc:
                self._log.warning("%s; retrying once in %.1f s", exc, RETRY_DELAY)
            await anyio.sleep(RETRY_DELAY)
            try:
                return await self._fetch()
            except ServerError as exc:
                self._log.warning("%s again: no STUN/TURN servers from the broker for now", exc)
                return None
        except NetworkError as exc:
            self._log.warning("no ICE servers from the broker: %s", exc)
            return None
