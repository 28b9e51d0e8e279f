"""The backend seam: choosing aiortc or wrtc, and what wrtc does like aiortc.

The DataConnection suite itself runs on every backend pair
(tests/integration/peerpy/test_dataconnection.py); this module covers the choice (``backend=``,
``PEERPY_BACKEND``, ``auto``), NetworkPolicy on wrtc, wrtc's 16 MiB send queue,
``conn.route`` on wrtc, uvloop, and the CLI's choice.  ``Timeouts.remote_gone``
on wrtc (and mixed pairs) is in tests/faults/test_peer.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from aiortc import RTCConfiguration
from websockets.asyncio.client import connect as ws_connect

from peerpy import backends as backend
from peerpy.backends import _sdp
from peerpy.config import Limits, Timeouts, resolve_network, resolve_rtc_configuration
from peerpy.exceptions import (
    ConfigurationError,
    NegotiationFailedError,
    PeerError,
)
from peerpy.network import NetworkPolicy
from peerpy.peer import Peer

from ...helpers.offers import data_offer, offer_frame

pytestmark = pytest.mark.anyio

needs_wrtc = pytest.mark.skipif(not backend.wrtc_installed(), reason="wrtc is not installed")
ROOT = Path(__file__).resolve().parents[3]


# --- Choosing ---------------------------------------------------------------------


def test_backend_from_argument_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """backend= wins over PEERPY_BACKEND; auto picks wrtc when installed (and no address
    policy is set); bad names fail."""
    monkeypatch.delenv("PEERPY_ICE_ADDRESSES")
    monkeypatch.setenv("PEERPY_BACKEND", "aiortc")
    assert Peer().backend == "aiortc"
    monkeypatch.setenv("PEERPY_BACKEND", "auto")
    assert Peer().backend == ("wrtc" if backend.wrtc_installed() else "aiortc")
    assert Peer(backend="aiortc").backend == "aiortc"
    monkeypatch.delenv("PEERPY_BACKEND")
    assert Peer().backend == backend.fastest_backend()
    monkeypatch.setenv("PEERPY_BACKEND", "webrtc")
    with pytest.raises(ConfigurationError, match="PEERPY_BACKEND"):
        Peer()
    with pytest.raises(ConfigurationError, match="'auto', 'aiortc' or 'wrtc'"):
        Peer(backend="native")


def test_wrtc_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for wrtc without it installed says how to install it; auto uses aiortc."""
    monkeypatch.setattr(backend, "wrtc_installed", lambda: False)
    with pytest.raises(ConfigurationError, match=r"peerpy-sdk\[wrtc\]"):
        Peer(backend="wrtc")
    assert Peer(backend="auto").backend == "aiortc"


@needs_wrtc
@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (NetworkPolicy(udp_buffer_bytes=1024 * 1024), "udp_buffer_bytes"),
    ],
)
def test_network_policy_wrtc_cannot_honour(policy: NetworkPolicy, field: str) -> None:
    """What wrtc cannot do raises ConfigurationError naming the field; auto keeps aiortc."""
    with pytest.raises(ConfigurationError, match=f"NetworkPolicy.{field}"):
        Peer(backend="wrtc", network=policy)
    assert Peer(backend="auto", network=policy).backend == "aiortc"


@needs_wrtc
@pytest.mark.parametrize(
    "policy",
    [
        NetworkPolicy(),
        NetworkPolicy(udp_buffer_bytes=None),
        NetworkPolicy.loopback(),
        NetworkPolicy(local_addresses=("127.0.0.1", "::1"), remote_networks=("10.0.0.0/8",)),
        NetworkPolicy(local_addresses=("192.0.2.1",)),
        NetworkPolicy(local_addresses=("127.0.0.1", "192.0.2.1")),
    ],
)
def test_network_policy_wrtc_honours(policy: NetworkPolicy) -> None:
    """Address policies (any local addresses), remote filtering and the default buffers are
    fine on wrtc, and auto takes it for them."""
    assert Peer(backend="wrtc", network=policy).backend == "wrtc"
    assert Peer(backend="auto", network=policy).backend == "wrtc"


def test_wrtc_keeps_remote_candidates_routed_from_allowed_addresses() -> None:
    """With local_addresses, a remote candidate stays only if the kernel reaches it from an
    allowed address (what makes every check leave through an allowed interface)."""
    sdp = "\r\n".join(
        [
            "v=0",
            "a=candidate:1 1 udp 2122194687 127.0.0.1 50149 typ host generation 0",
            "a=candidate:2 1 udp 2122267903 ::1 53739 typ host generation 0",
            "a=candidate:3 1 udp 2122194687 peer.local 50150 typ host generation 0",
        ]
    )
    routed = {"127.0.0.1": "127.0.0.1", "::1": "::1"}.get
    kept = _sdp.remote_candidates(
        sdp, NetworkPolicy(local_addresses=("127.0.0.1",)), lambda h: routed(h) == "127.0.0.1"
    )
    assert [line.split()[0] for line in kept.split("\r\n") if "candidate:" in line] == [
        "a=candidate:1"
    ]


def test_candidate_filtering_in_sdp() -> None:
    """peerpy's SDP filtering (wrtc's) keeps what the policy allows; aiortc's SDP passes."""
    sdp = "\r\n".join(
        [
            "v=0",
            "a=candidate:1 1 udp 2122194687 127.0.0.1 50149 typ host generation 0",
            "a=candidate:2 1 udp 2122267903 ::1 53739 typ host generation 0",
            "a=candidate:3 1 tcp 1518214911 127.0.0.1 9 typ host tcptype active",
            "a=candidate:4 1 udp 1 192.0.2.7 3478 typ srflx raddr 0.0.0.0 rport 0",
            "a=end-of-candidates",
        ]
    )

    local = _sdp.local_candidates(sdp, NetworkPolicy.loopback())
    assert [line.split()[0] for line in local.split("\r\n") if "candidate:" in line] == [
        "a=candidate:1"
    ]
    remote = _sdp.remote_candidates(sdp, NetworkPolicy(remote_networks=("192.0.2.0/24",)))
    assert [line.split()[0] for line in remote.split("\r\n") if "candidate:" in line] == [
        "a=candidate:4"
    ]
    anywhere = _sdp.local_candidates(sdp, NetworkPolicy())
    assert [line.split()[0] for line in anywhere.split("\r\n") if "candidate:" in line] == [
        "a=candidate:4"
    ]
    offline = "\r\n".join(line for line in sdp.split("\r\n") if "192.0.2.7" not in line)
    assert _sdp.local_candidates(offline, NetworkPolicy()) == offline
    aiortc = backend.get_backend("aiortc")
    assert aiortc.local_sdp(sdp, NetworkPolicy.loopback()) == sdp
    assert aiortc.remote_sdp(sdp, NetworkPolicy(remote_networks=("192.0.2.0/24",))) == sdp


# --- wrtc at work -----------------------------------------------------------------


@needs_wrtc
async def test_wrtc_send_queue_limit_never_surfaces(url: str, peer_id: str) -> None:
    """A high-water mark above libwebrtc's 16 MiB queue: send() waits instead of failing."""
    limits = Limits(send_high_water=64 * 1024 * 1024, send_low_water=32 * 1024 * 1024)
    total = 40 * 1024 * 1024
    async with (
        Peer(peer_id + "a", server=url, backend="wrtc", limits=limits) as alice,
        Peer(peer_id + "b", server=url, backend="wrtc") as bob,
    ):
        conn = await alice.connect(peer_id + "b", serialization="raw", reliable=True)
        incoming = await bob.accept()
        chunk = os.urandom(256 * 1024)
        peak = 0
        received = 0

        async def drain() -> None:
            nonlocal received
            while received < total:
                received += len(await incoming.recv())

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                for _ in range(total // len(chunk)):
                    await conn.send(chunk)  # would raise at 16 MiB buffered without the cap
                    peak = max(peak, conn.buffered_amount)
        assert received == total
        assert peak < backend_send_queue_limit()


def backend_send_queue_limit() -> int:
    from peerpy.backends import wrtc

    return wrtc.SEND_QUEUE_LIMIT


@needs_wrtc
@pytest.mark.parametrize("backends", [("wrtc", "wrtc"), ("wrtc", "aiortc"), ("aiortc", "wrtc")])
async def test_route_on_wrtc(url: str, peer_id: str, backends: tuple[str, str]) -> None:
    """conn.route on wrtc is the selected pair: direct, host to host on 127.0.0.1."""
    async with (
        Peer(peer_id + "a", server=url, backend=backends[0]) as alice,
        Peer(peer_id + "b", server=url, backend=backends[1]) as bob,
    ):
        conn = await alice.connect(peer_id + "b")
        incoming = await bob.accept()
        for c in (conn, incoming):
            route = c.route
            assert route is not None, c.backend
            assert (route.local_type, route.protocol) == ("host", "udp")
            assert route.local_address[0] == "127.0.0.1"
            assert route.remote_address[0] == "127.0.0.1"
            assert not route.relayed
            assert str(route).startswith("direct, 127.0.0.1:")
        assert conn.route is not None
        assert incoming.route is not None
        assert conn.route.local_address == incoming.route.remote_address
        await conn.close()
        assert conn.route is not None  # the last route seen stays


@needs_wrtc
@pytest.mark.parametrize("wrtc_offers", [True, False], ids=["wrtc-offers", "wrtc-answers"])
async def test_wrtc_refuses_a_route_outside_remote_networks(
    url: str, peer_id: str, wrtc_offers: bool
) -> None:
    """remote_networks on wrtc: a peer-reflexive route to elsewhere is refused, not used."""
    policy = NetworkPolicy(local_addresses=("127.0.0.1",), remote_networks=("10.0.0.0/8",))
    timeouts = Timeouts(negotiation=8.0)
    async with (
        Peer(peer_id + "w", server=url, backend="wrtc", network=policy, timeouts=timeouts) as w,
        Peer(peer_id + "a", server=url, backend="aiortc", timeouts=timeouts) as a,
    ):
        if wrtc_offers:
            with (
                anyio.fail_after(15),
                pytest.raises(NegotiationFailedError, match="remote_networks"),
            ):
                await w.connect(peer_id + "a")
        else:
            outcome: list[object] = []
            done = anyio.Event()

            async def call() -> None:
                try:
                    conn = await a.connect(peer_id + "w")
                    await conn.wait_closed()  # the wrtc side refuses it
                    outcome.append("closed")
                except PeerError as exc:
                    outcome.append(exc)
                done.set()

            handed_out: list[object] = []

            async def take() -> None:
                handed_out.append(await w.accept())

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(take)
                with anyio.fail_after(15):
                    await done.wait()  # the aiortc side ended
                tg.cancel_scope.cancel()
            assert len(outcome) == 1  # closed by the wrtc side, or failed
            assert handed_out == []  # never handed out while the attempt lasted
        assert w.connections == []


async def late_candidate_offerer(
    url: str, target: str, connection_id: str, candidate_delay: float | None
) -> None:
    """Offer ``target`` a raw-serialization connection the way a browser does: an SDP
    without candidates, whose candidate is trickled ``candidate_delay`` s after the
    ANSWER (never if None), so our connectivity checks reach ``target`` first and
    libwebrtc pairs with a peer-reflexive remote it does not disclose yet."""
    from webrtc.aiortc import RTCSessionDescription

    from peerpy.backends import wrtc

    pc = wrtc.create_peer_connection(None, NetworkPolicy(local_addresses=("127.0.0.1",)))
    try:
        channel = pc.createDataChannel("late", ordered=True)
        echoed = anyio.Event()
        channel.on("message", lambda message: (channel.send(message), echoed.set()))
        await pc.setLocalDescription(await pc.createOffer())
        lines = pc.localDescription.sdp.split("\r\n")
        candidates = [
            line[2:] for line in lines if line.startswith("a=candidate:") and " 127.0.0.1 " in line
        ]
        bare = "\r\n".join(line for line in lines if not line.startswith("a=candidate:"))
        ws_base = "ws" + url[4:] + "peerjs?key=peerjs&id=browserlike&token=t"
        async with ws_connect(ws_base) as ws:
            assert json.loads(await ws.recv())["type"] == "OPEN"
            payload = data_offer(bare, connection_id, label="late", serialization="raw")
            await ws.send(offer_frame(target, payload))
            while (answer := json.loads(await ws.recv()))["type"] != "ANSWER":
                pass
            sdp = answer["payload"]["sdp"]
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp["sdp"], type="answer"))
            if candidate_delay is not None:
                await anyio.sleep(candidate_delay)
                candidate = {"candidate": candidates[0], "sdpMid": "0", "sdpMLineIndex": 0}
                trickled = {"candidate": candidate, "type": "data", "connectionId": connection_id}
                await ws.send(json.dumps({"type": "CANDIDATE", "dst": target, "payload": trickled}))
            with anyio.move_on_after(20):
                await echoed.wait()  # the target's value, echoed back
    finally:
        await pc.close()


@needs_wrtc
@pytest.mark.parametrize("candidate_delay", [0.5, None], ids=["trickled-late", "never"])
async def test_wrtc_opens_to_an_undisclosed_remote_on_this_machine(
    url: str, peer_id: str, candidate_delay: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """remote_networks on wrtc, a browser-like caller whose checks come before its
    trickled candidate (libwebrtc pairs with a peer-reflexive remote it does not
    disclose): when the pair's local end is a loopback socket, the remote is on this
    machine (nothing else can reach a loopback address), so the connection opens at
    once, within the policy, whether the candidate comes late or never. (Before, it
    waited up to ROUTE_DISCLOSURE_WAIT for the candidate and was refused without it,
    which failed `peerpy demo` on wrtc on a machine with another interface.)"""
    monkeypatch.setattr(backend, "ROUTE_DISCLOSURE_WAIT", 30.0)  # never reached
    policy = NetworkPolicy(local_addresses=("127.0.0.1",), remote_networks=("127.0.0.0/8",))
    async with (
        Peer(peer_id, server=url, backend="wrtc", network=policy) as target,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(late_candidate_offerer, url, peer_id, "dc_late", candidate_delay)
        with anyio.fail_after(10):
            incoming = await target.accept()
        route = incoming.route
        assert route is not None
        assert route.local_address[0] == "127.0.0.1"
        assert route.remote_address[0] in ("127.0.0.1", "?")
        await incoming.send("through the route")
        with anyio.fail_after(10):
            assert await incoming.recv() == "through the route"
        tg.cancel_scope.cancel()


# --- The event loop and the CLI ----------------------------------------------------


def test_uvloop_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """peerpy's own runs use uvloop when installed, unless PEERPY_UVLOOP=0."""
    monkeypatch.delenv("PEERPY_UVLOOP", raising=False)
    assert backend.loop_options() == {"use_uvloop": backend.uvloop_installed()}

    async def loop_module() -> str:
        import asyncio

        return type(asyncio.get_running_loop()).__module__

    expected = "uvloop" if backend.uvloop_installed() else "asyncio"
    assert backend.run(loop_module).split(".")[0] == expected
    monkeypatch.setenv("PEERPY_UVLOOP", "0")
    assert backend.run(loop_module).split(".")[0] == "asyncio"


def test_sync_facade_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync facade's event loop thread runs uvloop where installed."""
    from anyio.from_thread import start_blocking_portal

    import peerpy.sync

    seen: list[dict[str, object]] = []
    real = start_blocking_portal

    def spy(*args: object, **kwargs: object) -> object:
        seen.append({"args": args, "kwargs": kwargs})
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(peerpy.sync, "start_blocking_portal", spy)
    monkeypatch.setattr(peerpy.sync, "loop_options", lambda: {"use_uvloop": True})
    with contextlib.suppress(Exception):  # no broker there: only the loop choice matters
        peerpy.sync.Peer(server="http://127.0.0.1:9/").start()
    assert seen
    assert seen[0]["args"] == ("asyncio", {"use_uvloop": True})


@needs_wrtc
def test_auto_takes_wrtc_under_an_address_policy() -> None:
    """auto picks wrtc when the policy restricts addresses: wrtc honours them (the
    NetworkPolicy lab test proves no packet leaves on an excluded interface)."""
    policies = [
        NetworkPolicy(local_addresses=("127.0.0.1",)),
        NetworkPolicy(remote_networks=("127.0.0.0/8",)),
        NetworkPolicy(local_addresses=("198.51.100.1",)),
    ]
    for policy in policies:
        assert backend.explain_backend("auto", RTCConfiguration(iceServers=[]), policy) == (
            "wrtc",
            None,
        )
    # Asked for by name, nothing needs explaining.
    assert backend.explain_backend(
        "aiortc", RTCConfiguration(iceServers=[]), NetworkPolicy(local_addresses=("127.0.0.1",))
    ) == ("aiortc", None)


@needs_wrtc
def test_source_address_is_the_kernels_choice() -> None:
    """The route check asks the kernel (a connected UDP socket) which local address it
    would send from; hostnames and unroutable addresses have none."""
    from peerpy.backends.wrtc import source_address

    assert source_address("127.0.0.7") == "127.0.0.1"
    assert source_address("::1") == "::1"
    assert source_address("peer.local") is None
    assert source_address("192.0.2.9") is None  # no route in the test namespace


@pytest.mark.slow
def test_cli_demo_uses_the_fastest_backend_and_says_so(tmp_path: Path) -> None:
    """`peerpy demo` picks wrtc when installed (else aiortc), uvloop too, and prints both."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "server"), str(ROOT / "protocol")]),
    }
    env.pop("PEERPY_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-m", "peerpy.cli", "demo", "--size", "2MiB"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loop = "uvloop" if backend.uvloop_installed() else "asyncio"
    # The fastest backend that honours the environment's address policy (the suite
    # restricts ICE to 127.0.0.1, which keeps auto on aiortc).
    chosen, why = backend.explain_backend(
        "auto", resolve_rtc_configuration(None), resolve_network(None, environ=env)
    )
    line = f"backend: {chosen} on {loop}" + (f" ({why})" if why else "")
    assert line in " ".join(result.stderr.split())  # rich wraps long lines


@needs_wrtc
async def test_wrtc_operation_cancelled_by_a_closing_peer_connection_is_an_error() -> None:
    """wrtc cancels an operation (setLocalDescription...) whose peer connection closes
    under it by raising a bare CancelledError into the caller, which would cancel the
    caller's whole task group: peerpy raises InvalidStateError instead.  A cancellation
    by the caller's own scope stays a cancellation."""
    from aiortc.exceptions import InvalidStateError

    from peerpy.backends import wrtc

    async def cancelled_by_wrtc() -> None:
        raise asyncio.CancelledError

    pc = wrtc.create_peer_connection(None, NetworkPolicy(local_addresses=("127.0.0.1",)))
    try:
        with pytest.raises(asyncio.CancelledError):  # open: not wrtc's closing
            await pc._peerpy_operation(cancelled_by_wrtc())
    finally:
        await pc.close()
    with pytest.raises(InvalidStateError, match="closed"):
        await pc._peerpy_operation(cancelled_by_wrtc())
    with anyio.move_on_after(0.01) as scope:  # our own scope's cancellation
        await pc._peerpy_operation(anyio.sleep(5))
    assert scope.cancelled_caught
