"""NetworkPolicy (peerpy.network) and the aiortc hooks applying it (peerpy.backends._aioice).

Real aiortc peers on loopback, each with its own policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aioice.ice
import aiortc
import anyio
import pytest
from aioice import Connection, stun
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from hypothesis import given
from hypothesis import strategies as st

from peerpy import network
from peerpy.backends import _aioice
from peerpy.exceptions import UsageError, WebRTCError
from peerpy.network import (
    BackendVersionError,
    InvalidAddressError,
    NetworkPolicy,
    create_peer_connection,
    ice_sockets,
    remote_candidate_allowed,
)

pytestmark = pytest.mark.anyio

OFF = NetworkPolicy(
    local_addresses=None, remote_networks=None, udp_buffer_bytes=None, relay_hold=None
)
LINUX = sys.platform.startswith("linux")

PeerFactory = Callable[[NetworkPolicy], RTCPeerConnection]


@pytest.fixture
async def make_peer() -> AsyncIterator[PeerFactory]:
    """Create peers without ICE servers; close them all after the test."""
    made: list[RTCPeerConnection] = []

    def make(policy: NetworkPolicy) -> RTCPeerConnection:
        pc = create_peer_connection(RTCConfiguration(iceServers=[]), policy)
        made.append(pc)
        return pc

    yield make
    for pc in made:
        await pc.close()


def candidate_lines(sdp: str) -> list[str]:
    """The ``a=candidate:`` attribute values of an SDP."""
    return [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:")]


def candidate_hosts(sdp: str) -> set[tuple[str, str]]:
    """The (address, type) of every candidate in an SDP."""
    return {(c.ip, c.type) for c in map(candidate_from_sdp, candidate_lines(sdp))}


def remote_ips(pc: RTCPeerConnection) -> set[str]:
    """The addresses of the remote candidates ``pc``'s ICE knows (peer-reflexive too)."""
    assert pc.sctp is not None
    return {c.ip for c in pc.sctp.transport.transport.getRemoteCandidates()}


async def offer(pc: RTCPeerConnection) -> RTCSessionDescription:
    """Open a data channel on ``pc`` and set (and return) its gathered offer."""
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription


async def answer(pc: RTCPeerConnection, remote: RTCSessionDescription) -> RTCSessionDescription:
    """Apply an offer to ``pc`` and set (and return) its answer."""
    await pc.setRemoteDescription(remote)
    await pc.setLocalDescription(await pc.createAnswer())
    return pc.localDescription


async def wait_state(pc: RTCPeerConnection, wanted: str) -> None:
    """Wait (10 s at most) until ``pc.connectionState`` is ``wanted``; fail on another end."""
    with anyio.fail_after(10):
        while pc.connectionState != wanted:
            assert pc.connectionState not in {"failed", "closed"}
            changed = anyio.Event()
            pc.once("connectionstatechange", changed.set)
            await changed.wait()


async def round_trip(
    offerer: RTCPeerConnection,
    answerer: RTCPeerConnection,
    edit_offer: Callable[[str], str] = lambda sdp: sdp,
) -> str:
    """Connect two peers through SDP and return the echo of one message."""
    echoed: list[str] = []

    @answerer.on("datachannel")
    def on_channel(channel: RTCDataChannel) -> None:
        channel.on("message", lambda message: channel.send(f"echo:{message}"))

    opened, got = anyio.Event(), anyio.Event()
    channel = offerer.createDataChannel("chat")
    channel.on("open", opened.set)
    channel.on("message", lambda message: (echoed.append(message), got.set()))
    await offerer.setLocalDescription(await offerer.createOffer())
    local = RTCSessionDescription(edit_offer(offerer.localDescription.sdp), "offer")
    await offerer.setRemoteDescription(await answer(answerer, local))
    with anyio.fail_after(10):
        await opened.wait()
        channel.send("ping")
        await got.wait()
    return echoed[0]


def loopback_v6_available() -> bool:
    """Whether ``::1`` can be bound here (IPv6 may be disabled)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def strip_candidates(sdp: str) -> str:
    """Remove the candidates and end-of-candidates from an SDP, as a trickling peer sends it."""
    kept = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    return "\r\n".join(kept) + "\r\n"


# --- Real peers ------------------------------------------------------------------


async def test_loopback_peers_round_trip_a_message(make_peer: PeerFactory) -> None:
    """Two loopback-policy peers connect in-process and a message round-trips."""
    offerer, answerer = make_peer(NetworkPolicy.loopback()), make_peer(NetworkPolicy.loopback())
    assert await round_trip(offerer, answerer) == "echo:ping"
    assert offerer.connectionState == answerer.connectionState == "connected"


async def test_loopback_sdps_carry_only_127_0_0_1_host_candidates(make_peer: PeerFactory) -> None:
    """Offer and answer list exactly one candidate each: a 127.0.0.1 host candidate."""
    offerer, answerer = make_peer(NetworkPolicy.loopback()), make_peer(NetworkPolicy.loopback())
    sdp_offer = await offer(offerer)
    sdp_answer = await answer(answerer, sdp_offer)
    for description in (sdp_offer, sdp_answer):
        assert len(candidate_lines(description.sdp)) == 1
        assert candidate_hosts(description.sdp) == {("127.0.0.1", "host")}


async def test_without_policy_aioice_never_offers_127_0_0_1(make_peer: PeerFactory) -> None:
    """With local_addresses=None aioice gathers as usual, which never includes 127.0.0.1."""
    description = await offer(make_peer(OFF))
    assert ("127.0.0.1", "host") not in candidate_hosts(description.sdp)


@pytest.mark.skipif(not loopback_v6_available(), reason="IPv6 loopback ::1 cannot be bound here")
async def test_ipv6_loopback_peers_connect(make_peer: PeerFactory) -> None:
    """Peers restricted to ::1 (which aioice normally skips) connect over IPv6."""
    policy = NetworkPolicy(local_addresses=("::1",), remote_networks=("::1",))
    offerer, answerer = make_peer(policy), make_peer(policy)
    assert await round_trip(offerer, answerer) == "echo:ping"
    assert candidate_hosts(offerer.localDescription.sdp) == {("::1", "host")}
    assert remote_ips(answerer) == {"::1"}


@pytest.mark.skipif(
    not hasattr(aiortc, "RTCIceTransportPolicy"), reason="aiortc 1.15 has no relay-only policy"
)
async def test_relay_only_configuration_gathers_no_host_candidate() -> None:
    """With iceTransportPolicy="relay" local_addresses is not applied: no host candidate."""
    relay = aiortc.RTCIceTransportPolicy.RELAY
    config = RTCConfiguration(iceServers=[], iceTransportPolicy=relay)
    pc = create_peer_connection(config, NetworkPolicy.loopback())
    try:
        assert candidate_lines((await offer(pc)).sdp) == []
    finally:
        await pc.close()


async def test_sdp_candidates_outside_remote_networks_are_ignored(make_peer: PeerFactory) -> None:
    """An offered 127.0.0.2 candidate is ignored by an answerer allowing only 127.0.0.1."""
    offerer = make_peer(NetworkPolicy(local_addresses=("127.0.0.1", "127.0.0.2")))
    answerer = make_peer(
        NetworkPolicy(local_addresses=("127.0.0.1",), remote_networks=("127.0.0.1/32",))
    )
    assert await round_trip(offerer, answerer) == "echo:ping"
    offered = {ip for ip, _ in candidate_hosts(offerer.localDescription.sdp)}
    assert offered == {"127.0.0.1", "127.0.0.2"}
    # Neither signalled nor learned as peer-reflexive from the 127.0.0.2 socket's checks.
    assert remote_ips(answerer) == {"127.0.0.1"}


async def test_only_disallowed_sdp_candidates_make_ice_fail(make_peer: PeerFactory) -> None:
    """An offerer allowing none of the answer's candidates (nor its checks) fails ICE."""
    offerer = make_peer(
        NetworkPolicy(local_addresses=("127.0.0.1",), remote_networks=("127.0.0.1/32",))
    )
    answerer = make_peer(NetworkPolicy(local_addresses=("127.0.0.2",)))
    sdp_answer = await answer(answerer, await offer(offerer))
    assert candidate_hosts(sdp_answer.sdp) == {("127.0.0.2", "host")}
    # The answerer's checks from 127.0.0.2 may already be on their way: were they
    # not dropped, the offerer would learn a peer-reflexive candidate and connect.
    await offerer.setRemoteDescription(sdp_answer)
    with pytest.raises(AssertionError):
        await wait_state(offerer, "connected")
    assert offerer.connectionState == "failed"
    assert remote_ips(offerer) == set()


async def test_trickled_candidates_outside_remote_networks_are_ignored(
    make_peer: PeerFactory,
) -> None:
    """Trickled candidates are filtered too: the disallowed one never reaches ICE."""
    offerer = make_peer(NetworkPolicy(local_addresses=("127.0.0.1", "127.0.0.2")))
    answerer = make_peer(
        NetworkPolicy(local_addresses=("127.0.0.1",), remote_networks=("127.0.0.1/32",))
    )
    full = await offer(offerer)
    trickling = RTCSessionDescription(strip_candidates(full.sdp), "offer")
    await offerer.setRemoteDescription(await answer(answerer, trickling))
    candidates = [candidate_from_sdp(line) for line in candidate_lines(full.sdp)]
    assert {c.ip for c in candidates} == {"127.0.0.1", "127.0.0.2"}
    for candidate in sorted(candidates, key=lambda c: c.ip, reverse=True):
        candidate.sdpMid = "0"
        assert remote_candidate_allowed(candidate, NetworkPolicy.loopback())
        await answerer.addIceCandidate(candidate)
    await answerer.addIceCandidate(None)
    await wait_state(answerer, "connected")
    assert remote_ips(answerer) == {"127.0.0.1"}


async def test_mdns_candidates_are_ignored_unresolved(
    make_peer: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With remote_networks set, a .local candidate is dropped without an mDNS query."""
    resolver_wanted: list[object] = []

    async def no_mdns(subscriber: object) -> None:
        resolver_wanted.append(subscriber)
        raise AssertionError("aioice was asked to resolve an mDNS name")

    # Also keeps this test from sending multicast should the filter regress.
    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", no_mdns)
    answerer = make_peer(NetworkPolicy.loopback())
    sdp = (await offer(make_peer(NetworkPolicy.loopback()))).sdp
    await answerer.setRemoteDescription(RTCSessionDescription(strip_candidates(sdp), "offer"))
    mdns = candidate_from_sdp("candidate:1 1 udp 2130706431 0b1c2d3e.local 50000 typ host")
    mdns.sdpMid = "0"
    assert not remote_candidate_allowed(mdns, NetworkPolicy.loopback())
    assert remote_candidate_allowed(mdns, OFF)
    await answerer.addIceCandidate(mdns)
    assert remote_ips(answerer) == set()
    assert resolver_wanted == []


async def test_datagrams_from_outside_remote_networks_are_dropped(make_peer: PeerFactory) -> None:
    """A STUN request from 127.0.0.2 gets no answer; the same from 127.0.0.1 gets a 400."""
    pc = make_peer(NetworkPolicy(local_addresses=("127.0.0.1",), remote_networks=("127.0.0.1",)))
    await offer(pc)
    (ice_socket,) = ice_sockets(pc)
    host, port = ice_socket.getsockname()[:2]
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)

    async def reply_from(source: str) -> stun.Message | None:
        async with await anyio.create_udp_socket(local_host=source) as udp:
            await udp.sendto(bytes(request), host, port)
            with anyio.move_on_after(0.5):
                data, _ = await udp.receive()
                return stun.parse_message(data)
        return None

    assert await reply_from("127.0.0.2") is None
    reply = await reply_from("127.0.0.1")
    assert reply is not None
    assert reply.message_class == stun.Class.ERROR
    assert reply.attributes["ERROR-CODE"][0] == 400


async def stun_exchange(
    pc: RTCPeerConnection, requests: list[stun.Message], wait: float = 0.5
) -> list[stun.Message]:
    """Send ``requests`` to ``pc``'s one ICE socket from 127.0.0.1; return the replies."""
    (ice_socket,) = ice_sockets(pc)
    host, port = ice_socket.getsockname()[:2]
    replies: list[stun.Message] = []
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as udp:
        for request in requests:
            await udp.sendto(bytes(request), host, port)
        with anyio.move_on_after(wait):
            while len(replies) < len(requests):
                data, _ = await udp.receive()
                replies.append(stun.parse_message(data))
    return replies


def binding_request(username: str | None, password: str | None) -> stun.Message:
    """A binding request with USERNAME and MESSAGE-INTEGRITY when given."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    if username is not None:
        request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1
    if password is not None:
        request.add_message_integrity(password.encode())
    return request


async def test_unauthenticated_checks_are_refused(make_peer: PeerFactory) -> None:
    """Checks lacking MESSAGE-INTEGRITY, or naming another ufrag, get a 400; signed ones a 200.

    aioice 0.10 alone would answer success to the first two (peerpy refuses them there).
    """
    pc = make_peer(NetworkPolicy.loopback())
    await offer(pc)
    connection = pc.sctp.transport.transport.iceGatherer._connection  # type: ignore[union-attr]
    ufrag, password = connection.local_username, connection.local_password
    replies = await stun_exchange(pc, [binding_request(f"{ufrag}:them", None)])
    replies += await stun_exchange(pc, [binding_request(f"other{ufrag}:them", password)])
    replies += await stun_exchange(pc, [binding_request(f"{ufrag}:them", password)])
    assert [r.message_class for r in replies] == [
        stun.Class.ERROR,
        stun.Class.ERROR,
        stun.Class.RESPONSE,
    ]
    assert [r.attributes.get("ERROR-CODE", (None,))[0] for r in replies[:2]] != [None, None]
    assert replies[2].attributes["XOR-MAPPED-ADDRESS"][0] == "127.0.0.1"


async def test_checks_before_the_answer_are_kept_boundedly(make_peer: PeerFactory) -> None:
    """At most 100 checks received before connect() are kept, however many arrive."""
    pc = make_peer(NetworkPolicy.loopback())
    await offer(pc)
    connection = pc.sctp.transport.transport.iceGatherer._connection  # type: ignore[union-attr]
    ufrag, password = connection.local_username, connection.local_password
    replies: list[stun.Message] = []
    for _ in range(3):  # in batches, so that the replies fit our socket's buffer
        requests = [binding_request(f"{ufrag}:them", password) for _ in range(50)]
        replies += await stun_exchange(pc, requests, wait=2)
    assert len(replies) == 150
    assert all(r.message_class == stun.Class.RESPONSE for r in replies)
    assert len(connection._early_checks) == 100


async def test_policies_in_one_process_are_independent(make_peer: PeerFactory) -> None:
    """Peers with different policies, and a plain aiortc peer, gather independently."""
    first = make_peer(NetworkPolicy.loopback())
    second = make_peer(NetworkPolicy(local_addresses=("127.0.0.2",)))
    plain = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        async with anyio.create_task_group() as tg:
            for pc in (first, second, plain):
                tg.start_soon(offer, pc)
        assert candidate_hosts(first.localDescription.sdp) == {("127.0.0.1", "host")}
        assert candidate_hosts(second.localDescription.sdp) == {("127.0.0.2", "host")}
        plain_hosts = candidate_hosts(plain.localDescription.sdp)
        assert not {ip for ip, _ in plain_hosts} & {"127.0.0.1", "127.0.0.2"}
        assert plain.sctp is not None
        assert type(plain.sctp.transport.transport.iceGatherer._connection) is Connection
        # Nothing global was patched.
        assert "get_component_candidates" not in vars(Connection) or (
            Connection.get_component_candidates.__module__ == "aioice.ice"
        )
        assert aioice.ice.get_host_addresses.__module__ == "aioice.ice"
    finally:
        await plain.close()


# --- Socket buffers ----------------------------------------------------------------


def buffers(pc: RTCPeerConnection) -> list[tuple[int, int]]:
    """(SO_RCVBUF, SO_SNDBUF) as reported for each of ``pc``'s ICE sockets."""
    return [
        (
            s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )
        for s in ice_sockets(pc)
    ]


async def test_socket_buffers_are_applied(make_peer: PeerFactory) -> None:
    """The requested size is set on both buffers of every ICE socket."""
    size = 96 * 1024
    pc = make_peer(NetworkPolicy(local_addresses=("127.0.0.1", "127.0.0.2"), udp_buffer_bytes=size))
    await offer(pc)
    reported = size * 2 if LINUX else size  # Linux reports twice the granted size
    assert buffers(pc) == [(reported, reported)] * 2


async def test_no_buffer_size_leaves_the_os_default(make_peer: PeerFactory) -> None:
    """udp_buffer_bytes=None leaves the send buffer at the OS default."""
    pc = make_peer(NetworkPolicy(local_addresses=("127.0.0.1",), udp_buffer_bytes=None))
    await offer(pc)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:
        default = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    ((_, send_buffer),) = buffers(pc)
    assert send_buffer == default


def read_rmem_max() -> int:
    """The kernel's cap on requested receive buffers (net.core.rmem_max)."""
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


@pytest.mark.skipif(not LINUX, reason="net.core.rmem_max is a Linux sysctl")
async def test_buffer_request_is_capped_by_rmem_max_with_a_warning(
    make_peer: PeerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Above net.core.rmem_max the kernel caps the buffer (no FORCE, even as root) and we warn."""
    rmem_max = read_rmem_max()
    size = min(rmem_max * 2, network.MAX_UDP_BUFFER_BYTES)
    pc = make_peer(NetworkPolicy(local_addresses=("127.0.0.1",), udp_buffer_bytes=size))
    _aioice._warned.clear()
    with caplog.at_level(logging.WARNING, logger="peerpy.network"):
        await offer(pc)
    ((receive_buffer, _),) = buffers(pc)
    assert receive_buffer == 2 * rmem_max
    assert "net.core.rmem_max" in caplog.text


# --- Policy values and errors ------------------------------------------------------


def test_loopback_policy_fields() -> None:
    """loopback() gathers on 127.0.0.1 only and allows 127.0.0.0/8 and ::1."""
    policy = NetworkPolicy.loopback()
    assert policy.local_addresses == ("127.0.0.1",)
    assert policy.remote_networks == ("127.0.0.0/8", "::1/128")
    assert policy.udp_buffer_bytes == 4 * 1024 * 1024


def test_addresses_and_networks_are_canonicalised() -> None:
    """Lists become tuples, literals canonical forms, duplicates collapse, host bits clear."""
    policy = NetworkPolicy(
        local_addresses=["::0001", "127.0.0.1", "::1"], remote_networks=["10.1.2.3/8", "::1"]
    )
    assert policy.local_addresses == ("::1", "127.0.0.1")
    assert policy.remote_networks == ("10.0.0.0/8", "::1/128")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"local_addresses": ("localhost",)}, "'localhost' is not an IPv4 or IPv6 literal"),
        ({"local_addresses": ("300.1.1.1",)}, "'300.1.1.1' is not an IPv4"),
        ({"local_addresses": ("0.0.0.0",)}, "unspecified or multicast"),
        ({"local_addresses": ("224.0.0.251",)}, "unspecified or multicast"),
        ({"local_addresses": "127.0.0.1"}, "write ('127.0.0.1',)"),
        ({"local_addresses": ()}, "use None"),
        ({"local_addresses": (127,)}, "must be strings"),
        ({"remote_networks": ("10.0.0.0/33",)}, "'10.0.0.0/33' is not a CIDR"),
        ({"remote_networks": ("example.org",)}, "is not a CIDR"),
        ({"udp_buffer_bytes": True}, "must be an int"),
        ({"udp_buffer_bytes": 0}, "between"),
        ({"udp_buffer_bytes": 1 << 31}, "between"),
    ],
)
def test_bad_values_raise_a_clear_usage_error(kwargs: dict[str, object], message: str) -> None:
    """Invalid fields raise InvalidAddressError (a UsageError and a ValueError) naming them."""
    with pytest.raises(InvalidAddressError) as raised:
        NetworkPolicy(**kwargs)  # type: ignore[arg-type]
    assert isinstance(raised.value, UsageError)
    assert isinstance(raised.value, ValueError)
    assert message in str(raised.value)


@given(st.lists(st.text(max_size=50), max_size=3), st.lists(st.text(max_size=50), max_size=3))
def test_arbitrary_text_parses_or_raises_our_error(local: list[str], remote: list[str]) -> None:
    """Any text either yields a valid policy or raises InvalidAddressError, nothing else."""
    with contextlib.suppress(InvalidAddressError):
        NetworkPolicy(local_addresses=local or None, remote_networks=remote or None)


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.0.2.2", False),
        ("fd00::2", False),
        ("peer.local", False),
    ],
)
def test_remote_candidate_allowed_by_loopback(ip: str, allowed: bool) -> None:
    """loopback() allows 127.0.0.0/8 and ::1 (also IPv4-mapped), nothing else."""
    candidate = candidate_from_sdp(f"candidate:1 1 udp 2130706431 {ip} 9 typ host")
    assert remote_candidate_allowed(candidate, NetworkPolicy.loopback()) is allowed
    assert remote_candidate_allowed(candidate, OFF)


@given(st.text(max_size=60))
def test_any_remote_address_text_gets_a_verdict(ip: str) -> None:
    """Whatever address a remote candidate claims, the check answers True/False, never raises."""
    candidate = candidate_from_sdp("candidate:1 1 udp 2130706431 127.0.0.1 9 typ host")
    candidate.ip = ip
    assert remote_candidate_allowed(candidate, NetworkPolicy.loopback()) in (True, False)


def test_scoped_ipv6_addresses_are_judged_without_their_scope() -> None:
    """A link-local address with a %scope lies in fe80::/10 and nowhere else."""
    candidate = candidate_from_sdp("candidate:1 1 udp 2130706431 fe80::1%eth0 9 typ host")
    assert remote_candidate_allowed(candidate, NetworkPolicy(remote_networks=("fe80::/10",)))
    assert not remote_candidate_allowed(candidate, NetworkPolicy.loopback())


def test_unbindable_local_address_is_rejected_up_front() -> None:
    """A local address this host does not have is refused when creating the connection."""
    policy = NetworkPolicy(local_addresses=("203.0.113.7",))
    with pytest.raises(InvalidAddressError, match=r"'203\.0\.113\.7' cannot be bound"):
        create_peer_connection(RTCConfiguration(iceServers=[]), policy)


async def test_no_bindable_address_at_gathering_raises(
    make_peer: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If no allowed address can be bound at gathering time, setLocalDescription raises."""
    monkeypatch.setattr(_aioice, "_check_bindable", lambda addresses: None)
    pc = make_peer(NetworkPolicy(local_addresses=("203.0.113.7",)))
    with pytest.raises(WebRTCError, match="no host candidate"):
        await offer(pc)


def fake_versions(aiortc: str, aioice: str) -> Callable[[str], str]:
    """A stand-in for ``_installed_version`` reporting the given versions."""
    return {"aiortc": aiortc, "aioice": aioice}.__getitem__


@pytest.mark.parametrize(
    ("aiortc", "aioice"),
    [("9.0.0", "9.0.0"), ("1.17.0", "0.13.0"), ("1.15.0", "0.13.0"), ("1.16.0", "0.10.2")],
)
def test_unsupported_backend_versions_fail_loudly(
    monkeypatch: pytest.MonkeyPatch, aiortc: str, aioice: str
) -> None:
    """An unsupported aiortc/aioice pair (mixed ones too) makes a hooking policy raise."""
    monkeypatch.setattr(_aioice, "_installed_version", fake_versions(aiortc, aioice))
    with pytest.raises(BackendVersionError) as raised:
        create_peer_connection(RTCConfiguration(iceServers=[]), NetworkPolicy.loopback())
    message = str(raised.value)
    assert f"aiortc {aiortc} with aioice {aioice} is installed" in message
    assert "aiortc 1.15.x with aioice 0.10.x, aiortc 1.16.x with aioice 0.13.x" in message
    # A policy needing no hook works with any version.
    assert type(create_peer_connection(RTCConfiguration(iceServers=[]), OFF)) is RTCPeerConnection


@pytest.mark.parametrize(("aiortc", "aioice"), [("1.15.1", "0.10.2"), ("1.16.0", "0.13.4")])
def test_supported_backend_pairs_pass_the_version_check(
    monkeypatch: pytest.MonkeyPatch, aiortc: str, aioice: str
) -> None:
    """Both supported pairs, at any patch release, pass the check."""
    monkeypatch.setattr(_aioice, "_installed_version", fake_versions(aiortc, aioice))
    _aioice._check_backend()


def test_policy_must_be_a_network_policy() -> None:
    """Passing something else as the policy is a UsageError."""
    with pytest.raises(UsageError, match="must be a NetworkPolicy"):
        create_peer_connection(None, "loopback")  # type: ignore[arg-type]


async def test_consent_checks_are_retransmitted(make_peer: PeerFactory) -> None:
    """A consent check (sent by aioice without retransmission) survives one lost or late reply.

    aioice gives each RFC 7675 check a single 0.5 s try; a receiver working
    through a full socket buffer answers later, and 6 misses close a healthy
    connection.  The responder here ignores the first request.
    """
    pc = make_peer(NetworkPolicy.loopback())
    await offer(pc)
    connection = pc.sctp.transport.transport.iceGatherer._connection  # type: ignore[union-attr]
    (protocol,) = connection._protocols
    requests: list[bytes] = []

    async with await anyio.create_udp_socket(local_host="127.0.0.1") as responder:
        address = responder.extra(anyio.abc.SocketAttribute.local_address)

        async def respond() -> None:
            while True:
                data, (host, port) = await responder.receive()
                requests.append(data)
                if len(requests) > 1:  # drop the first, answer the retransmission
                    asked = stun.parse_message(data)
                    reply = stun.Message(
                        message_method=stun.Method.BINDING,
                        message_class=stun.Class.RESPONSE,
                        transaction_id=asked.transaction_id,
                    )
                    await responder.sendto(bytes(reply), host, port)

        async with anyio.create_task_group() as tg:
            tg.start_soon(respond)
            request = stun.Message(
                message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
            )
            with anyio.fail_after(5):
                response, _ = await protocol.request(request, address, retransmissions=0)
            tg.cancel_scope.cancel()
    assert response.message_class == stun.Class.RESPONSE
    assert len(requests) == 2


async def test_ice_closing_while_dtls_starts_ends_the_task_quietly(
    make_peer: PeerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiortc starts DTLS and SCTP in a task of its own: when the ICE connection is closed
    under it (the peer connection closing, or aioice giving up on consent; here between
    DTLS and SCTP), aioice's ConnectionError ("Cannot send data, not connected") failed
    that orphan task, which the event loop reported (and a test's loop raised). Now the
    task ends quietly and the connection simply never opens."""
    start = aiortc.RTCSctpTransport.start
    closed = anyio.Event()

    async def start_on_a_closed_ice(self: aiortc.RTCSctpTransport, *args: object) -> None:
        await self.transport.transport._connection.close()  # DTLS is up; ICE goes away
        closed.set()
        await start(self, *args)

    monkeypatch.setattr(aiortc.RTCSctpTransport, "start", start_on_a_closed_ice)
    offerer, answerer = make_peer(NetworkPolicy.loopback()), make_peer(NetworkPolicy.loopback())
    offerer.createDataChannel("chat")
    await offerer.setLocalDescription(await offerer.createOffer())
    await offerer.setRemoteDescription(await answer(answerer, offerer.localDescription))
    with anyio.fail_after(10):
        await closed.wait()
    await anyio.sleep(0.5)  # the task has failed (or not) by now
    assert offerer.connectionState != "connected"


@pytest.mark.parametrize("yields", range(5))
async def test_closing_while_gathering_leaves_no_socket_open(
    make_peer: PeerFactory, yields: int
) -> None:
    """A peer connection closed while it gathers (right after its offer, as a half-open
    one evicted in a flood) keeps no socket: aioice closed those made before close()
    and kept the ones made after it open for good (16 of 20 such closes leaked one;
    uvloop could then hang closing its loop)."""
    pc = make_peer(NetworkPolicy.loopback())
    pc.createDataChannel("chat")
    offer = await pc.createOffer()
    gathering = asyncio.ensure_future(pc.setLocalDescription(offer))
    for _ in range(yields):  # close at different points of the gathering
        await asyncio.sleep(0)
    connection = pc.sctp.transport.transport.iceGatherer._connection
    await pc.close()
    with contextlib.suppress(Exception):  # aiortc may fail the description: it closed
        await gathering
    still_open = [
        protocol
        for protocol in connection._protocols
        if protocol.transport is not None and not protocol.transport.is_closing()
    ]
    assert still_open == []
