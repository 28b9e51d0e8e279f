"""Who gets ICE servers from ``GET {path}{key}/ice``: the checks, and a bound on failures.

A request names an API key, a peer id and its token (:class:`IceRequest`).
:class:`IceAccess` grants it when

* the key is the broker's (``config.key``, as the WebSocket handshake checks it),
* and the token is the one the id is registered with: on this instance or, in
  cluster mode, on any instance of the cluster.  Finding that token is the
  caller's :data:`TokenLookup` (the realm, or Redis with a bounded wait); it
  may answer later.

Its answer is a :class:`Verdict`, whose value is the HTTP status.  Guessing
is bounded per address: every check takes a token from the address's bucket
(:class:`~peerpy_server.core.limiter.SourceLimiter`, :data:`FAILURE_BURST`
at once, then :data:`FAILURE_RATE` per second) and a granted one gives it back,
so only refusals spend them.  An address with an empty bucket is answered 429
without a check; IPv6 addresses share a bucket per /64 (one host usually holds
the whole /64).  Every refusal is counted in ``/metrics``
(``refusals_total{reason=...}``: ``ice-refused``, ``ice-rate-limit``,
``ice-sources-full``, ``ice-unavailable``) and logged as a rate-limited WARNING
with the address.

Sans-I/O: the clock is the caller's, the lookup answers through a callback.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import Final, TypeAlias

import attrs

from ..logs import WarningLimiter
from .limiter import SourceLimiter
from .realm import truncate
from .stats import Stats

__all__ = [
    "FAILURE_BURST",
    "FAILURE_RATE",
    "UNREACHABLE",
    "IceAccess",
    "IceRequest",
    "Registered",
    "TokenLookup",
    "Verdict",
]

logger: Final = logging.getLogger("peerpy_server.ice")

#: Refused ``/ice`` checks one address may make at once...
FAILURE_BURST: Final = 30
#: ...and per second on average after that (a guesser gets one try a second).
FAILURE_RATE: Final = 1.0
#: Most addresses whose failures are tracked at once (about 200 bytes each).
MAX_SOURCES: Final = 10_000


class Verdict(enum.Enum):
    """The answer to an ``/ice`` request; the value is its HTTP status."""

    #: Key, id and token match: the ICE servers are handed out.
    GRANTED = 200
    #: Wrong key, unknown id or wrong token (one answer for all three).
    REFUSED = 401
    #: Too many refusals from this address lately: not checked.
    LIMITED = 429
    #: The cluster store could not say whether the id is registered.
    UNAVAILABLE = 503


class _Unreachable(enum.Enum):
    UNREACHABLE = "unreachable"


#: What a :data:`TokenLookup` answers when the cluster store cannot be asked.
UNREACHABLE: Final = _Unreachable.UNREACHABLE
#: A lookup's answer: the token the id is registered with, ``None`` (not
#: registered) or :data:`UNREACHABLE`.
Registered: TypeAlias = "str | _Unreachable | None"
#: ``lookup(peer_id, answer)``: call ``answer`` once with what is registered (now or later).
TokenLookup: TypeAlias = Callable[[str, Callable[[Registered], None]], None]


@attrs.frozen
class IceRequest:
    """One ``GET {path}{key}/ice?id=ID&token=TOKEN``, and where it came from."""

    key: str
    peer_id: str
    token: str = attrs.field(repr=False)
    #: The request's ``Host`` header (our STUN server is named after it).
    host: str | None
    #: The remote address (the failure limit's key).
    ip: str


class IceAccess:
    """The ``/ice`` checks of one broker (see the module docstring).

    ``clock()`` is the broker's monotonic clock, read when a check starts and
    when it ends.
    """

    def __init__(
        self,
        key: str,
        stats: Stats,
        warnings: WarningLimiter,
        clock: Callable[[], float],
        *,
        limiter: SourceLimiter | None = None,
    ) -> None:
        self._key = key.encode()
        self._stats = stats
        self._warnings = warnings
        self._clock = clock
        if limiter is None:
            limiter = SourceLimiter(
                rate=FAILURE_RATE, burst=FAILURE_BURST, max_sources=MAX_SOURCES, name="ice"
            )
        self.limiter = limiter

    def check(
        self, request: IceRequest, lookup: TokenLookup, done: Callable[[Verdict], None]
    ) -> None:
        """Decide ``request``: call ``done(verdict)`` once, now or when ``lookup`` answers."""
        now = self._clock()
        source = _source(request.ip)
        limited = self.limiter.allow(source, now)
        if limited is not None:
            self._refuse(limited, request, now, "too many refused requests lately; not checked")
            done(Verdict.LIMITED)
            return
        if not request.peer_id or not hmac.compare_digest(request.key.encode(), self._key):
            self._refuse("ice-refused", request, now, "wrong key or no id")
            done(Verdict.REFUSED)
            return

        def found(registered: Registered) -> None:
            later = self._clock()
            if registered is UNREACHABLE:
                self.limiter.refund(source, later)  # not the requester's failure
                self._refuse("ice-unavailable", request, later, "the cluster store is unreachable")
                done(Verdict.UNAVAILABLE)
            elif registered is not None and hmac.compare_digest(
                registered.encode(), request.token.encode()
            ):
                self.limiter.refund(source, later)
                done(Verdict.GRANTED)
            else:
                self._refuse("ice-refused", request, later, "unknown id or wrong token")
                done(Verdict.REFUSED)

        lookup(request.peer_id, found)

    def _refuse(self, reason: str, request: IceRequest, now: float, why: str) -> None:
        self._stats.refuse(reason)
        self._warnings.warning(
            logger, reason, now, "Refused /ice for %s from %s (%s): %s",
            truncate(request.peer_id) or "no id", request.ip, reason, why,
        )  # fmt: skip


def _source(ip: str) -> str:
    """The failure limit's key: the address, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return ip
