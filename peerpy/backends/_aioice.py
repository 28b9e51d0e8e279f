"""The aiortc backend's hooks into aiortc and aioice: a NetworkPolicy and ``remote_gone``.

:func:`create_peer_connection` builds an ``RTCPeerConnection`` whose ICE
follows a :class:`~peerpy.network.NetworkPolicy` (the value object, which
imports nothing of aiortc), for its own ICE connections only; other connections
in the process keep aioice's behaviour.

Separately, :func:`create_peer_connection` can tighten ICE consent freshness
(RFC 7675) for that connection alone, so that a remote that was killed, frozen
or cut off is noticed in seconds (``remote_gone``), and :func:`watch_remote`
tells the caller why the connection is ending before aiortc tears it down.

How it works, and why it is safe to share a process
---------------------------------------------------
aiortc offers no hook for any of this, so this module reaches into aiortc and
aioice internals (as do, to read state, :mod:`peerpy.backends.aiortc` and
:mod:`peerpy.backends._sctp`, and nothing outside ``peerpy/backends/``), always
per object, never per module or class:

1. the returned connection is a private subclass of ``RTCPeerConnection`` that
   overrides the (name-mangled) method creating each ICE/DTLS transport pair;
2. the aioice ``Connection`` of each new transport gets its class switched to a
   subclass that overrides ``get_component_candidates`` (to pick the addresses
   and size the buffers), ``add_remote_candidate`` (to filter candidates),
   ``query_consent`` (to notice a dead remote, see below), ``connect`` and
   ``check_start`` (to hold relayed pairs back, see below) and, for aioice 0.10
   only, ``request_received`` (to refuse unauthenticated checks);
3. each ``StunProtocol`` it gathers gets its class switched to a subclass whose
   ``datagram_received`` drops datagrams from disallowed addresses.

These hooks depend on aiortc and aioice internals, so :func:`create_peer_connection`
checks the installed versions against the supported pairs
(:data:`SUPPORTED_BACKENDS`: aiortc 1.16 with aioice 0.13 on Python >= 3.11,
aiortc 1.15 with aioice 0.10 on Python 3.10) and the internals it needs, and
raises :class:`BackendVersionError` rather than silently ignoring the policy. A
policy with every field ``None`` needs no hook and works with any version.

The internals used are the same in both pairs (the mangled method name, the
signatures of ``get_component_candidates``, ``add_remote_candidate`` and
``StunProtocol.request``, the ``_protocols`` list, consent checks sent with
``retransmissions=0``, ``query_consent`` started as one task once ICE
completes, ``build_request``, ``_nominated``, ``remote_password``,
``_query_consent_task``, ``check_start``, ``check_state``, ``_check_list``,
``_remote_candidates_end`` and the pairs' ``state`` and ``remote_nominated``).
The differences handled here, each commented where it is: aiortc 1.15 has no
``RTCConfiguration.iceTransportPolicy`` (so no relay-only policy); aioice 0.10
takes a binding request lacking MESSAGE-INTEGRITY or USERNAME as authenticated
(the connection subclass answers it 400, as 0.13 does) and keeps checks
received before ``connect()`` in an unbounded list (bounded here to 0.13's 100).

mDNS (``.local``) remote candidates
-----------------------------------
aioice resolves a ``.local`` candidate by multicast DNS (a shared responder on
UDP port 5353, queries to 224.0.0.251) and pairs the resolved address. When
``remote_networks`` is set, such candidates are ignored without being resolved:
their address is unknown until resolved, and resolving them already sends
multicast traffic outside the allowed networks. With ``remote_networks=None``
they are passed to aioice unchanged.

Noticing a dead remote
----------------------
aioice checks consent about every 5 s and gives up after six misses in a row;
with the two retransmissions ``_PolicyStunProtocol`` gives each check, a killed
or frozen remote was noticed after 47-50 s. With ``remote_gone`` set, the
connection's ``query_consent`` is replaced (per object; aioice's module
constants are untouched): a check about every second (``remote_gone / 4`` when
smaller), each one retransmitted twice (up to 3.5 s for an answer), and the
remote is declared gone once ``remote_gone`` seconds passed without an answer
*and* at least two checks in a row went unanswered. The second condition keeps
a stalled local event loop from condemning a healthy remote: answers that
queued meanwhile are read before any check times out. The callback given to
:func:`watch_remote` runs first and should close the peer connection; if that
has not happened 2 s later, the aioice connection closes itself, as on aioice's
own expiry. Each check answered before its first retransmission also gives
the pair's round-trip time, which ``conn.stats()`` reports (kept in the
connection's :data:`RTT` attribute).

Direct before relayed
---------------------
aioice, when controlling, nominates the first pair whose check succeeds, and a
relayed pair can win that race against a direct pair whose first check the
other side's NAT dropped. With ``NetworkPolicy.relay_hold`` set, each check of
a relayed pair first waits for :class:`~peerpy.relayhold.RelayHold` to allow
it (polled every 20 ms, aioice's own pacing), marked in progress meanwhile so
that aioice's pacing goes on with the other pairs and does not declare the
check list failed. Triggered checks (answering the other side's) go through
the same ``check_start``, so the remote's relayed checks cannot tip the race
either.

Socket buffers
--------------
The buffers are requested with ``SO_RCVBUF``/``SO_SNDBUF``; Linux caps the
request at ``net.core.rmem_max``/``wmem_max`` (and reports double the granted
value). ``SO_RCVBUFFORCE`` is deliberately not used even when running as root:
library code must not override limits the administrator set, and a process
holding ``CAP_NET_ADMIN`` would otherwise behave differently from the same
code unprivileged. When the kernel grants less than requested, a warning names
the sysctl to raise. This module never changes sysctls.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import inspect
import logging
import random
import socket
import sys
from asyncio.trsock import TransportSocket
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import attrs
from aioice import Candidate, Connection
from aioice.ice import CandidatePair, StunProtocol
from aioice.stun import Message, TransactionError, TransactionTimeout
from aiortc import RTCConfiguration, RTCDtlsTransport, RTCPeerConnection
from aiortc.exceptions import InvalidStateError

from ..exceptions import BackendVersionError, InvalidAddressError, UsageError, WebRTCError
from ..network import IPNetwork, NetworkPolicy, address_allowed, check_remote_gone, remote_networks
from ..relayhold import PairView, RelayHold, relayed

__all__ = ["SUPPORTED_BACKENDS", "create_peer_connection", "ice_sockets", "watch_remote"]

# The logger keeps the name it had when these hooks lived in peerpy.network.
logger = logging.getLogger("peerpy.network")

#: The (aiortc, aioice) release series pairs whose internals the hooks were tested
#: with: 1.16/0.13 need Python >= 3.11, 1.15/0.10 is what Python 3.10 gets.
SUPPORTED_BACKENDS: Final = frozenset({("1.16", "0.13"), ("1.15", "0.10")})


_CREATE_TRANSPORT: Final = "_RTCPeerConnection__createDtlsTransport"
#: The task aiortc starts after each setRemoteDescription() (see _PolicyPeerConnection).
_CONNECT: Final = "_RTCPeerConnection__connect"


@functools.cache
def _installed_version(distribution: str) -> str:
    # Cached: reading package metadata costs ~1 ms, twice on every connect().
    return importlib.metadata.version(distribution)


def _check_backend() -> None:
    """Raise :class:`BackendVersionError` unless the hooks fit aiortc and aioice."""
    problems = []
    versions = {name: _installed_version(name) for name in ("aiortc", "aioice")}
    series = tuple(".".join(versions[name].split(".")[:2]) for name in ("aiortc", "aioice"))
    if series not in SUPPORTED_BACKENDS:
        supported = ", ".join(
            f"aiortc {r}.x with aioice {i}.x" for r, i in sorted(SUPPORTED_BACKENDS)
        )
        problems.append(
            f"aiortc {versions['aiortc']} with aioice {versions['aioice']} is installed, "
            f"supported: {supported}"
        )
    if not callable(getattr(RTCPeerConnection, _CREATE_TRANSPORT, None)):
        problems.append(f"RTCPeerConnection has no {_CREATE_TRANSPORT}()")
    parameters = inspect.signature(Connection.get_component_candidates).parameters
    if list(parameters)[:3] != ["self", "component", "addresses"]:
        problems.append("aioice Connection.get_component_candidates() changed signature")
    parameters = inspect.signature(StunProtocol.request).parameters
    if "retransmissions" not in parameters:
        problems.append("aioice StunProtocol.request() has no retransmissions parameter")
    for method in ("query_consent", "build_request", "close", "check_start", "check_state"):
        if not callable(getattr(Connection, method, None)):
            problems.append(f"aioice Connection has no {method}()")
    if problems:
        raise BackendVersionError(
            "NetworkPolicy hooks into aiortc and aioice internals and cannot be applied: "
            + "; ".join(problems)
            + ". Install a supported pair, or use a NetworkPolicy whose fields are all None"
            " and Timeouts(remote_gone=None)."
        )


@attrs.frozen
class _Rules:
    """A policy compiled for the hooks."""

    local_addresses: tuple[str, ...] | None
    networks: tuple[IPNetwork, ...] | None
    buffer_bytes: int | None
    #: Seconds without a consent answer before the remote is gone; None: aioice's way.
    remote_gone: float | None = None
    #: Whether host candidates are gathered at all (not with a relay-only policy).
    gathers_hosts: bool = True
    #: Seconds relayed pairs wait for a direct one (NetworkPolicy.relay_hold); None: none.
    relay_hold: float | None = None


def _adopt(obj: object, base: type, subclass: type) -> None:
    """Switch ``obj`` (exactly a ``base``) to ``subclass``, which only adds overrides."""
    if type(obj) is not base:
        raise BackendVersionError(
            f"expected aiortc/aioice to use a plain {base.__qualname__}, found "
            f"{type(obj).__qualname__}; cannot apply the NetworkPolicy"
        )
    obj.__class__ = subclass


def _protocols_of(connection: Connection) -> list[StunProtocol]:
    """The sockets' protocols of an aioice connection (a private list in aioice)."""
    protocols = getattr(connection, "_protocols", None)
    if not isinstance(protocols, list):
        raise BackendVersionError("aioice Connection has no _protocols list")
    return protocols


class _PolicyPeerConnection(RTCPeerConnection):
    """An ``RTCPeerConnection`` that applies rules to each ICE connection it creates."""

    def __init__(self, configuration: RTCConfiguration | None, rules: _Rules) -> None:
        self._peerpy_rules = rules
        self._peerpy_on_remote_gone: Callable[[float], None] | None = None
        super().__init__(configuration)

    def _peerpy_remote_gone(self, silent: float) -> bool:
        """Called by an ICE connection whose remote is gone; tell whether anyone heard."""
        callback = self._peerpy_on_remote_gone
        if callback is None:
            return False
        self._peerpy_on_remote_gone = None  # once, for the first transport
        callback(silent)
        return True

    async def _RTCPeerConnection__connect(self) -> None:
        # aiortc runs this in a task of its own after each setRemoteDescription().
        # aiortc 1.15 does not look whether the connection was closed meanwhile
        # (1.16 does), so closing a connection right after its OFFER (a half-open
        # one evicted in a flood) failed that orphan task with InvalidStateError.
        # Nor does it catch aioice's ConnectionError when the ICE connection is closed
        # (the peer connection closing, or aioice giving up on consent) while DTLS or
        # SCTP starts over it: the orphan task failed with "Cannot send data, not
        # connected". The connection's state says what happened; the task ends quietly.
        if getattr(self, "_RTCPeerConnection__isClosed", None) is not None:
            return
        try:
            await getattr(super(), _CONNECT)()
        except ConnectionError as exc:
            logger.debug("ICE connection closed while the peer connection started: %s", exc)
        except InvalidStateError:
            if getattr(self, "_RTCPeerConnection__isClosed", None) is None:
                raise  # not a connection closed under the task: aiortc's own error

    def _RTCPeerConnection__createDtlsTransport(self) -> RTCDtlsTransport:
        # aiortc calls this (as self.__createDtlsTransport) for every transport it
        # creates, before gathering and before adding any remote candidate.
        dtls: RTCDtlsTransport = getattr(super(), _CREATE_TRANSPORT)()
        connection = getattr(dtls.transport.iceGatherer, "_connection", None)
        _adopt(connection, Connection, _PolicyConnection)
        assert isinstance(connection, _PolicyConnection)
        connection._peerpy_rules = self._peerpy_rules
        connection._peerpy_report_gone = self._peerpy_remote_gone
        if not _AIOICE_AUTHENTICATES:
            # aioice 0.10 keeps every check received before connect() in an
            # unbounded list; 0.13 keeps the last 100, as this deque does.
            connection._early_checks = deque(maxlen=_MAX_EARLY_CHECKS)
        return dtls


class _PolicyConnection(Connection):
    """An aioice ``Connection`` that gathers, filters and sizes sockets by its rules."""

    _peerpy_rules: _Rules
    _peerpy_report_gone: Callable[[float], bool]
    _peerpy_hold: RelayHold | None = None
    _peerpy_closed = False

    async def connect(self) -> None:
        """Start the relay hold's clock, then run aioice's checks.

        Cancelling cancels the checks, as in aioice.
        """
        hold = self._peerpy_rules.relay_hold
        if hold:
            self._peerpy_hold = RelayHold(started=asyncio.get_running_loop().time(), hold=hold)
        await super().connect()

    async def check_start(self, pair: CandidatePair) -> None:
        """Check ``pair``, a relayed one once the hold allows it.

        Cancelling (aioice does once a pair is nominated) ends the wait or the check.
        """
        hold = self._peerpy_hold
        if hold is not None and _view(pair).relayed:
            await _await_release(self, pair, hold)
        await super().check_start(pair)

    async def close(self) -> None:
        self._peerpy_closed = True
        if not _AIOICE_AUTHENTICATES:
            # aioice 0.10 closes its sockets while connectivity checks still
            # retransmit, and on Python 3.10 each later retransmission fails inside
            # asyncio (a closed transport's sendto). End those transactions first,
            # as timeouts, which the checks handle: a connection closed during ICE
            # (a half-open one evicted in an OFFER flood) then ends quietly.
            for protocol in _protocols_of(self):
                for transaction in list(getattr(protocol, "transactions", {}).values()):
                    future = getattr(transaction, "_Transaction__future", None)
                    if future is not None and not future.done():
                        future.set_exception(TransactionTimeout())
        await super().close()

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[Candidate]:
        """Gather on the allowed addresses, then police the new sockets.

        Called by ``gather_candidates()``; cancelling it cancels the gathering.
        """
        rules = self._peerpy_rules
        if rules.local_addresses is not None:
            addresses = list(rules.local_addresses)
        elif not addresses and rules.gathers_hosts:
            # No interface but loopback is up (an offline machine): aioice would
            # gather nothing and every connection would time out; gather on
            # loopback, which peers on this machine can reach.
            logger.info("no network interface is up but loopback: gathering on 127.0.0.1")
            addresses = [_LOOPBACK_FALLBACK]
        candidates = await super().get_component_candidates(
            component=component, addresses=addresses, timeout=timeout
        )
        if self._peerpy_closed:
            # Closed while gathering (a peer connection closed right after its
            # offer or answer): aioice's close() closed the sockets made so far, and
            # the ones made since would stay open for good (a file descriptor each,
            # and uvloop could hang closing its loop on them).
            protocols = _protocols_of(self)
            for protocol in protocols:
                await protocol.close()
            protocols.clear()
            return []
        for protocol in _protocols_of(self):
            if type(protocol) is StunProtocol:
                _police_protocol(protocol, rules)
        if rules.local_addresses is not None:
            _check_gathered(rules.local_addresses, candidates)
        return candidates

    def request_received(
        self, message: Message, addr: tuple[str, int], protocol: StunProtocol, *raw: bytes
    ) -> None:
        """Answer 400 to a request aioice 0.10 would take as authenticated; else defer.

        aioice 0.10 (which adds a ``raw`` argument) checks MESSAGE-INTEGRITY only
        when present, and USERNAME only once the remote description is set, so
        it answers success to, and starts a check towards, the sender of any bare
        binding request.  aioice 0.13 requires both attributes itself.
        """
        if _AIOICE_AUTHENTICATES or _names_us(message, self.local_username):
            super().request_received(message, addr, protocol, *raw)
        else:
            self.respond_error(message, addr, protocol, (400, "Bad Request"))

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """Add the candidate unless its address is outside the allowed networks.

        Cancelling it cancels the resolution of an mDNS candidate (which only
        happens when no networks are set).
        """
        networks = self._peerpy_rules.networks
        if remote_candidate is not None and not address_allowed(remote_candidate.host, networks):
            logger.info("ignoring remote candidate %s: outside remote_networks", remote_candidate)
            return
        await super().add_remote_candidate(remote_candidate)

    async def query_consent(self) -> None:
        """Check consent until the remote is gone, then close (aioice starts it).

        With ``remote_gone`` unset this is aioice's own loop.  Cancelled by
        ``close()``; cancelling it stops the checks and nothing else.
        """
        limit = self._peerpy_rules.remote_gone
        if limit is None:
            await super().query_consent()
            return
        silent = await _await_silence(self, limit)
        logger.info(
            "no answer to ICE consent checks for %.1f s: the remote is gone, closing", silent
        )
        if self._peerpy_report_gone(silent):
            # Give the owner time to close the whole peer connection (which
            # cancels this task): closing ICE under a live SCTP association
            # leaves aiortc tasks failing with "not connected".
            await asyncio.sleep(_OWNER_CLOSE_GRACE)
        # As aioice does on expiry: close() must not cancel the task running it.
        self._query_consent_task = None
        await self.close()


def _view(pair: CandidatePair) -> PairView:
    return PairView(
        relayed=relayed(pair.local_candidate.type, pair.remote_candidate.type),
        failed=pair.state == CandidatePair.State.FAILED,
    )


async def _await_release(connection: Connection, pair: CandidatePair, hold: RelayHold) -> None:
    """Wait until ``hold`` allows checking the relayed ``pair``.  Cancelling ends the wait."""
    loop = asyncio.get_running_loop()
    waiting = False
    while True:
        more = not connection._remote_candidates_end or (
            getattr(connection, "_remote_candidates_resolving", 0) > 0
        )
        if hold.allows(
            _view(pair),
            [_view(p) for p in connection._check_list],
            now=loop.time(),
            controlling=connection.ice_controlling,
            nominated_by_remote=pair.remote_nominated,
            more_candidates=more,
        ):
            return
        if not waiting:
            waiting = True
            logger.debug("holding relayed pair %s back for a direct one", pair)
            # In progress for aioice: its pacing moves on to the next pair,
            # and the check list cannot be taken for failed meanwhile.
            connection.check_state(pair, CandidatePair.State.IN_PROGRESS)
        await asyncio.sleep(min(_HOLD_POLL, max(0.0, hold.release_at - loop.time())))


#: How often a held relayed pair looks whether it may go (aioice paces checks at 20 ms).
_HOLD_POLL: Final = 0.02


async def _await_silence(connection: Connection, limit: float) -> float:
    """Send consent checks until none was answered for ``limit`` s; return the silence.

    A check goes to every nominated pair about every ``interval`` seconds; each
    has two retransmissions, but waits no longer than half the limit, nor past
    the deadline by more than one retransmission timeout.  Cancelling stops
    the checks.
    """
    loop = asyncio.get_running_loop()
    interval = min(_CONSENT_INTERVAL, limit / 4)
    password = connection.remote_password
    assert password is not None, "consent checks start once the remote password is known"
    key = password.encode("utf8")
    last_answer = loop.time()
    misses = 0
    while True:
        # Randomised between 0.8 and 1.2 times the interval, as RFC 7675 asks.
        await asyncio.sleep(interval * (0.8 + 0.4 * random.random()))
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            # Leave room for a second check before the deadline when the
            # limit is short (a check takes at most 3.5 s anyway).
            deadline = last_answer + limit - loop.time()
            window = max(min(deadline, limit / 2), _MIN_CHECK_WINDOW)
            sent = loop.time()
            if await _consent_check(pair.protocol, request, pair.remote_addr, key, window):
                last_answer = loop.time()
                misses = 0
                if last_answer - sent < _MIN_CHECK_WINDOW:  # not retransmitted (Karn)
                    setattr(connection, RTT, last_answer - sent)  # for the stats
            else:
                misses += 1
        silent = loop.time() - last_answer
        if misses >= _MIN_CONSENT_MISSES and silent >= limit:
            return silent


async def _consent_check(
    protocol: StunProtocol, request: Message, addr: tuple[str, int], key: bytes, window: float
) -> bool:
    """Send one consent check; tell whether it was answered within ``window`` s.

    Not ``wait_for``: an answer that arrived in the same loop iteration as the
    time-out (after a stall of our own event loop) still counts here.
    Cancelling cancels the check.
    """
    check = asyncio.ensure_future(
        protocol.request(request, addr, integrity_key=key, retransmissions=_CONSENT_RETRANSMISSIONS)
    )
    try:
        await asyncio.wait({check}, timeout=window)
    finally:
        if not check.done():
            check.cancel()
            await asyncio.wait({check})
    if check.cancelled():
        return False
    error = check.exception()
    if isinstance(error, TransactionError):
        return False
    if error is not None:
        raise error
    return True


#: The attribute of an aioice connection holding its latest consent check's round trip (s).
RTT: Final = "_peerpy_rtt"
#: Seconds between consent checks with ``remote_gone`` set (aioice: 5).
_CONSENT_INTERVAL: Final = 1.0
#: Unanswered checks in a row needed, besides the silence, to declare a remote gone.
_MIN_CONSENT_MISSES: Final = 2
#: Shortest wait for the answer to one check (aioice's first retransmission timeout).
_MIN_CHECK_WINDOW: Final = 0.5
#: How long a watcher told of a gone remote has to close the peer connection itself.
_OWNER_CLOSE_GRACE: Final = 2.0


#: Where a policy without local_addresses gathers when only loopback is up.
_LOOPBACK_FALLBACK: Final = "127.0.0.1"
#: Whether aioice authenticates incoming checks itself (0.13 does, 0.10 does not).
_AIOICE_AUTHENTICATES: Final = hasattr(Message, "check_message_integrity")
#: Checks an aioice 0.10 connection keeps until connect() (aioice 0.13's own bound).
_MAX_EARLY_CHECKS: Final = 100


def _names_us(message: Message, local_username: str) -> bool:
    """Whether a request carries MESSAGE-INTEGRITY and a USERNAME for ``local_username``.

    aioice 0.10 then verifies the integrity with the local password itself.
    """
    username = message.attributes.get("USERNAME")
    return (
        "MESSAGE-INTEGRITY" in message.attributes
        and isinstance(username, str)
        and username.startswith(f"{local_username}:")
    )


def _check_gathered(addresses: tuple[str, ...], candidates: list[Candidate]) -> None:
    """Warn about allowed addresses that gave no host candidate; fail if none did."""
    hosts = {c.host for c in candidates if c.type == "host"}
    missing = [a for a in addresses if a not in hosts]
    if len(missing) == len(addresses):
        raise WebRTCError(
            f"ICE gathered no host candidate: none of local_addresses {addresses} could be bound"
        )
    if missing:
        logger.warning("ICE could not bind local addresses %s", missing)


class _PolicyStunProtocol(StunProtocol):
    """An aioice ``StunProtocol`` with our rules.

    It drops datagrams from disallowed addresses (when networks are set), and
    gives consent checks a longer window: aioice sends each RFC 7675 consent
    check once with a 0.5 s timeout and closes after 6 misses, but a receiver
    working through a full socket buffer (4 MiB is about 0.3 s of data at
    15 MB/s, far more on a slow CPU) answers later than that, and a healthy
    transfer would die after 30 s.  With two retransmissions a check may take
    3.5 s.
    """

    _peerpy_networks: tuple[IPNetwork, ...] | None
    _peerpy_verdicts: dict[str, bool]
    _peerpy_dropped: int

    async def request(
        self,
        request: Message,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[Message, tuple[str, int]]:
        """Run a STUN transaction; consent checks (sent without retransmission) get two.

        Cancelling cancels the transaction.
        """
        if retransmissions == 0:
            retransmissions = _CONSENT_RETRANSMISSIONS
        result: tuple[Message, tuple[str, int]] = await super().request(
            request, addr, integrity_key=integrity_key, retransmissions=retransmissions
        )
        return result

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if self._peerpy_networks is None:
            super().datagram_received(data, addr)
            return
        host = addr[0]
        allowed = self._peerpy_verdicts.get(host)
        if allowed is None:
            allowed = address_allowed(host, self._peerpy_networks)
            if len(self._peerpy_verdicts) < _MAX_VERDICTS:
                self._peerpy_verdicts[host] = allowed
        if allowed:
            super().datagram_received(data, addr)
            return
        self._peerpy_dropped += 1
        # Log the 1st, 2nd, 4th, 8th... drop: visible, yet bounded under a flood.
        if self._peerpy_dropped & (self._peerpy_dropped - 1) == 0:
            logger.info(
                "dropped %d datagram(s) from outside remote_networks, latest from %s",
                self._peerpy_dropped,
                host,
            )


#: Retransmissions given to a consent check (timeouts 0.5 + 1 + 2 s).
_CONSENT_RETRANSMISSIONS: Final = 2
#: Addresses whose verdict one socket remembers (bounds memory under spoofing).
_MAX_VERDICTS: Final = 64


def _police_protocol(protocol: StunProtocol, rules: _Rules) -> None:
    """Size the buffers of a new host socket and filter what it receives."""
    if rules.buffer_bytes is not None and protocol.local_candidate.type == "host":
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:
            _set_buffers(sock, rules.buffer_bytes)
    _adopt(protocol, StunProtocol, _PolicyStunProtocol)
    assert isinstance(protocol, _PolicyStunProtocol)
    protocol._peerpy_networks = rules.networks
    protocol._peerpy_verdicts = {}
    protocol._peerpy_dropped = 0


#: Linux reports (and accounts) twice the buffer size it grants.
_REPORTED_FACTOR: Final = 2 if sys.platform.startswith("linux") else 1
_SYSCTLS: Final = {socket.SO_RCVBUF: "net.core.rmem_max", socket.SO_SNDBUF: "net.core.wmem_max"}
_warned: set[tuple[int, int, int]] = set()


def _set_buffers(sock: TransportSocket, size: int) -> None:
    """Request ``size`` for both buffers; warn (once per outcome) when capped."""
    for option, sysctl in _SYSCTLS.items():
        sock.setsockopt(socket.SOL_SOCKET, option, size)
        granted = sock.getsockopt(socket.SOL_SOCKET, option) // _REPORTED_FACTOR
        if granted < size and (option, size, granted) not in _warned:
            _warned.add((option, size, granted))
            logger.warning(
                "requested a %d-byte UDP socket buffer, the kernel granted %d; "
                "an administrator can raise the %s sysctl",
                size,
                granted,
                sysctl,
            )


def _check_bindable(addresses: tuple[str, ...]) -> None:
    """Raise :class:`InvalidAddressError` unless each address can be bound here."""
    for text in addresses:
        family = socket.AF_INET6 if ":" in text else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((text, 0))
        except OSError as exc:
            raise InvalidAddressError(
                f"local address {text!r} cannot be bound on this host ({exc.strerror or exc})"
            ) from exc


# --- Entry points -----------------------------------------------------------


def create_peer_connection(
    configuration: RTCConfiguration | None,
    policy: NetworkPolicy,
    *,
    remote_gone: float | None = None,
) -> RTCPeerConnection:
    """Create an ``RTCPeerConnection`` whose ICE follows ``policy``.

    With ``remote_gone`` (seconds), ICE closes once the remote has answered no
    consent check for that long (see the module docstring); ``None`` keeps
    aioice's consent checks (about 30 s, 47-50 s with a policy's
    retransmissions). Register with :func:`watch_remote` to learn it first.

    ``configuration`` is passed to aiortc unchanged; ``None`` means aiortc's
    default, which names a public STUN server, so pass
    ``RTCConfiguration(iceServers=[])`` to stay off the Internet. STUN and TURN
    servers from the configuration are not subject to ``remote_networks``.
    With ``iceTransportPolicy="relay"`` no host candidates are gathered, so
    ``local_addresses`` has no effect.

    Raises :class:`InvalidAddressError` if a local address cannot be bound, and
    :class:`BackendVersionError` if the policy needs hooks the installed
    aiortc/aioice versions are not known to support. If the addresses vanish
    before gathering, ``setLocalDescription()`` raises
    :class:`~peerpy.exceptions.WebRTCError`.
    """
    if not isinstance(policy, NetworkPolicy):
        raise UsageError(f"policy must be a NetworkPolicy, got {policy!r}")
    check_remote_gone(remote_gone)
    if not policy.needs_hooks and remote_gone is None:
        return RTCPeerConnection(configuration)
    _check_backend()
    if policy.local_addresses is not None:
        _check_bindable(policy.local_addresses)
    # aiortc 1.16 has RTCConfiguration.iceTransportPolicy; 1.15 has no such
    # field and always gathers host candidates.
    transport_policy = getattr(configuration, "iceTransportPolicy", None)
    relay_only = getattr(transport_policy, "value", None) == "relay"
    rules = _Rules(
        local_addresses=None if relay_only else policy.local_addresses,
        networks=remote_networks(policy),
        buffer_bytes=policy.udp_buffer_bytes,
        remote_gone=remote_gone,
        gathers_hosts=not relay_only,
        # Relay-only: every pair is relayed, there is nothing to wait for.
        relay_hold=None if relay_only else policy.relay_hold,
    )
    return _PolicyPeerConnection(configuration, rules)


def watch_remote(pc: RTCPeerConnection, callback: Callable[[float], None]) -> bool:
    """Call ``callback(seconds)`` when ``pc``'s remote stops answering consent checks.

    It runs once, just before ICE closes (then aiortc reports the ICE
    connection ``"failed"``), with how long the remote has been silent. Return
    whether ``pc`` watches its remote at all: ``False`` unless it was made by
    :func:`create_peer_connection` with ``remote_gone`` set.
    """
    if not isinstance(pc, _PolicyPeerConnection) or pc._peerpy_rules.remote_gone is None:
        return False
    pc._peerpy_on_remote_gone = callback
    return True


def ice_sockets(pc: RTCPeerConnection) -> list[TransportSocket]:
    """The UDP sockets ICE has gathered for ``pc`` so far (a diagnostic aid).

    Works for any ``RTCPeerConnection``, with or without a policy; read
    ``getsockname()`` or ``getsockopt(SOL_SOCKET, SO_RCVBUF)`` on them.
    """
    ice_transports = [t.receiver.transport.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        ice_transports.append(pc.sctp.transport.transport)
    sockets: list[TransportSocket] = []
    for connection in dict.fromkeys(t.iceGatherer._connection for t in ice_transports):
        for protocol in _protocols_of(connection):
            sock = protocol.transport.get_extra_info("socket")
            if isinstance(sock, TransportSocket):
                sockets.append(sock)
    return sockets
