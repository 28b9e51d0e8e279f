"""Meeting on the local network with no broker configured: an embedded one, found by DNS-SD.

With no ``--server`` and no ``PEERPY_SERVER``, ``peerpy send`` runs
:func:`sender_broker`: a broker of its own (``peerpy_server``, in this
process) bound to this machine's local network addresses only, on a free
port, accepting only the ids of this one transfer, and announced with
mDNS/DNS-SD (python-zeroconf) under a name made of the code's *nameplate*
only (``peerpy-xfer-7._peerpy._tcp.local.``): the secret words never leave
the machine, and the transfer is still proved with the whole code (SPAKE2).
``peerpy receive CODE`` runs :func:`find_broker` to look that name up.
Leaving :func:`sender_broker` (done, an error, Ctrl-C) withdraws the
announcement (a DNS-SD goodbye) and stops the broker.

"Local network addresses" are the IPv4 addresses of this machine's
interfaces in private, shared or link-local ranges (not loopback, not a
public address): the broker is never reachable from outside the LAN.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import anyio
import attrs

from ..transfer import Code, make_code
from ..transfer.auth import LOCAL_NAMEPLATES
from ..transfer.errors import NoSenderError, TransferError, TransferUsageError

if TYPE_CHECKING:
    from peerpy_server import BrokerConfig
    from zeroconf.asyncio import AsyncZeroconf

__all__ = [
    "SERVICE_TYPE",
    "LanBroker",
    "chat_broker",
    "find_broker",
    "find_chat",
    "lan_addresses",
    "receiver_id",
    "sender_broker",
]

#: The DNS-SD service type every peerpy sender announces.
SERVICE_TYPE: Final = "_peerpy._tcp.local."
#: The most senders of one machine's neighbours a sender steps around (taken nameplates).
_NAME_TRIES: Final = 10
#: What the embedded broker admits: a transfer has two peers, a few reconnections.
_MAX_PEERS: Final = 4
_ACROSS: Final = (
    "across networks both sides need a broker: --server URL (your own: docs/deploy.md) "
    "or --server peerjs"
)


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses on local networks (private or link-local, not loopback)."""
    return [str(interface.ip) for interface in _lan_interfaces()]


def _lan_interfaces() -> list[ipaddress.IPv4Interface]:
    import ifaddr

    found: list[ipaddress.IPv4Interface] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):  # IPv6: (address, flowinfo, scope)
                continue
            interface = ipaddress.IPv4Interface(f"{ip.ip}/{ip.network_prefix}")
            address = interface.ip
            local = address.is_private or address.is_link_local or address in _SHARED
            if local and not address.is_loopback and interface not in found:
                found.append(interface)
    return found


def _reachable_first(announced: list[str]) -> list[str]:
    """``announced`` with the addresses on one of our own networks first."""
    networks = [interface.network for interface in _lan_interfaces()]
    ours = [a for a in announced if any(ipaddress.IPv4Address(a) in n for n in networks)]
    return ours + [a for a in announced if a not in ours]


_SHARED: Final = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, Tailscale


def receiver_id(code: Code) -> str:
    """A receiver's id on the sender's embedded broker: the nameplate's id and a random tail."""
    return f"{code.peer_id}-r{secrets.token_hex(8)}"


@attrs.frozen
class LanBroker:
    """Where a sender's embedded broker listens, and the code it serves."""

    code: Code
    url: str


@contextlib.asynccontextmanager
async def _zeroconf_on(addresses: list[str]) -> AsyncIterator[AsyncZeroconf]:
    """python-zeroconf on ``addresses`` only (IPv4); closed (goodbyes sent) on exit."""
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    zc = AsyncZeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
    try:
        yield zc
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled side still says goodbye
            await zc.async_close()


@contextlib.asynccontextmanager
async def _announced(
    zc: AsyncZeroconf, addresses: list[str], instance: str, ids: re.Pattern[str]
) -> AsyncIterator[str]:
    """A broker on ``addresses`` admitting ``ids`` only, announced as ``instance``; its URL.

    Raise zeroconf's ``NonUniqueNameException`` if a neighbour announces ``instance``.
    """
    from peerpy_server import Broker
    from zeroconf import ServiceInfo

    async with Broker(_broker_config(ids, addresses)) as broker:
        info = ServiceInfo(
            SERVICE_TYPE,
            f"{instance}.{SERVICE_TYPE}",
            port=broker.port,
            properties={"path": "/", "v": "1"},
            # A host name of its own: the instance name as host name mixes the
            # service's and the host's records (NSEC) and receivers miss the TXT.
            server=f"{instance}.local.",
            parsed_addresses=addresses,
        )
        await (await zc.async_register_service(info))
        try:
            yield f"http://{addresses[0]}:{broker.port}/"
        finally:
            with anyio.CancelScope(shield=True):
                await (await zc.async_unregister_service(info))


def _addresses_or_fail() -> list[str]:
    addresses = lan_addresses()
    if not addresses:
        raise TransferError("this machine has no local network address to announce on; " + _ACROSS)
    return addresses


@contextlib.asynccontextmanager
async def sender_broker(code: Code | None, words: int) -> AsyncIterator[LanBroker]:
    """Run and announce an embedded broker for one transfer; withdraw both on exit.

    ``code`` is the sender's ``--code`` (its nameplate must be free on this
    network), else a random one whose nameplate no neighbour announces.
    Cancelling it withdraws the announcement and stops the broker.
    """
    from zeroconf import NonUniqueNameException

    addresses = _addresses_or_fail()
    async with _zeroconf_on(addresses) as zc:
        for _ in range(_NAME_TRIES):
            chosen = code or make_code(secrets.randbelow(LOCAL_NAMEPLATES) + 1, words=words)
            # The sender's id and its receivers' (receiver_id), nothing else.
            ids = re.compile(rf"{re.escape(chosen.peer_id)}(?:-r[0-9a-f]{{16}})?")
            async with contextlib.AsyncExitStack() as stack:
                try:
                    url = await stack.enter_async_context(
                        _announced(zc, addresses, chosen.peer_id, ids)
                    )
                except NonUniqueNameException:
                    if code is not None:
                        raise TransferError(
                            f"another sender on this network uses the nameplate of {code}; "
                            "pick another code"
                        ) from None
                    continue
                yield LanBroker(chosen, url)
                return
    raise TransferError("found no free nameplate on this network")


@contextlib.asynccontextmanager
async def chat_broker(peer_id: str) -> AsyncIterator[str]:
    """``peerpy chat ID`` with no broker: one of our own, announced under ``ID``; its URL."""
    from zeroconf import NonUniqueNameException

    addresses = _addresses_or_fail()
    async with _zeroconf_on(addresses) as zc:
        try:
            async with _announced(zc, addresses, _chat_instance(peer_id), _ANY_ID) as url:
                yield url
        except NonUniqueNameException:
            raise TransferError(f"someone on this network already chats as {peer_id}") from None


def _chat_instance(peer_id: str) -> str:
    return f"peerpy-chat-{peer_id}"


_ANY_ID: Final = re.compile(r"[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*")


def _broker_config(ids: re.Pattern[str], addresses: list[str]) -> BrokerConfig:
    from peerpy_server import BrokerConfig

    return BrokerConfig(
        host=tuple(addresses),
        port=0,
        path="/",
        id_pattern=ids,
        concurrent_limit=_MAX_PEERS,
        max_connections=4 * _MAX_PEERS,
        max_connections_per_ip=2 * _MAX_PEERS,
        max_queues=_MAX_PEERS,
    )


async def find_broker(code: Code, wait: float) -> str:
    """The URL of the embedded broker announcing ``code``'s nameplate on this network.

    Looks for up to ``wait`` seconds (a sender started later is found as
    soon as it announces itself); raise :class:`NoSenderError` if none does.
    Cancelling stops the search.
    """
    found = await _find(code.peer_id, wait)
    if found is None:
        raise NoSenderError(f"no sender with code {code} on this network; {_ACROSS}")
    return found


async def find_chat(peer_id: str, wait: float) -> str:
    """The URL of the broker ``peerpy chat PEER_ID`` announces on this network."""
    found = await _find(_chat_instance(peer_id), wait)
    if found is None:
        raise NoSenderError(
            f"nobody chats as {peer_id} on this network (start `peerpy chat {peer_id}` "
            f"there first); {_ACROSS}"
        )
    return found


async def _find(instance: str, wait: float) -> str | None:
    """The URL announced under ``instance`` within ``wait`` seconds, else ``None``."""
    if wait <= 0:
        raise TransferUsageError("--wait must be a positive number of seconds")
    addresses = lan_addresses()
    if not addresses:
        return None
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo

    async with _zeroconf_on(addresses) as zc:
        info = AsyncServiceInfo(SERVICE_TYPE, f"{instance}.{SERVICE_TYPE}")
        if not await info.async_request(zc.zeroconf, wait * 1000):
            return None
    announced = _reachable_first(info.parsed_addresses(IPVersion.V4Only))
    if not announced or info.port is None:
        return None
    path = (info.properties.get(b"path") or b"/").decode(errors="replace")
    return f"http://{announced[0]}:{info.port}{path}"
