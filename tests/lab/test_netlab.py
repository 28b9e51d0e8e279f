"""Between machines for real: peers behind simulated NATs (see tests/lab).

Each case runs two peers (tests/lab/peer.py, as subprocesses in two lab
namespaces) through the broker in ``pub``, echoes 1 MiB over a DataConnection
and asserts the route ICE selected, as each side reports it.  The lab needs
root and nftables (and coturn for the TURN cases): outside CI it is skipped
without them; under ``CI=true`` it must run, so a lab that cannot be built
fails the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .fixture import (
    PROBE,
    STUN_PORT,
    RunningLab,
    read_line,
    stun_server,
    turn_credentials,
    turn_server,
)
from .netlab import PUB_ADDRESS, Lab, reap_stale_namespaces

pytestmark = [pytest.mark.netlab, pytest.mark.timeout(90)]


def _direct(route: dict[str, Any]) -> None:
    assert route["relayed"] is False, route
    assert route["local_type"] == "host", route
    assert route["text"].startswith("direct, "), route


def test_same_lan_goes_host_to_host(lab: RunningLab) -> None:
    outcome = lab.pair("lan1", "lan2", listener_ice=[], caller_ice=[])
    listener, caller = outcome.routes
    for route in (listener, caller):
        _direct(route)
        assert route["remote_type"] == "host", route
    assert caller["local_address"][0] == lab.addresses["lan2"]
    assert caller["remote_address"][0] == lab.addresses["lan1"]
    assert listener["remote_address"][0] == lab.addresses["lan2"]


def test_cone_nats_connect_directly_with_the_brokers_stun(lab: RunningLab) -> None:
    outcome = lab.pair("cone1", "cone2", listener_ice=[stun_server()], caller_ice=[stun_server()])
    listener, caller = outcome.routes
    for route in (listener, caller):
        _direct(route)
        # The other side's address as its NAT maps it: learnt from the broker's
        # STUN (srflx) or from its checks (prflx), never its private host address.
        assert route["remote_type"] in ("srflx", "prflx"), route
    assert caller["remote_address"][0] == lab.public["cone1"]
    assert listener["remote_address"][0] == lab.public["cone2"]
    assert caller["local_address"][0] == lab.addresses["cone2"]


def test_symmetric_nats_relay_through_turn_with_broker_credentials(lab: RunningLab) -> None:
    # "broker": the peers configure no ICE servers and ask the broker, which
    # hands out its STUN and coturn credentials it minted.
    outcome = lab.pair("sym1", "sym2", listener_ice="broker", caller_ice="broker")
    offered = outcome.caller_registered["ice"]
    assert offered == [[f"stun:{PUB_ADDRESS}:{STUN_PORT}"], [f"turn:{PUB_ADDRESS}:3478"]]
    for route in outcome.routes:
        # Relayed through our coturn on each side: through its own allocation,
        # or (a legit ICE outcome seen once, on both sides at the same time)
        # from its host socket, through its NAT, to the other side's relay.
        assert route["relayed"] is True, route
        if route["local_type"] == "relay":
            assert route["local_address"][0] == PUB_ADDRESS, route
            assert route["relay_protocol"] == "udp", route
            assert route["relay_server"] == [PUB_ADDRESS, 3478], route
            assert route["text"] == f"relayed via TURN {PUB_ADDRESS}:3478 (udp)", route
        else:
            # Never the other side's NAT directly: its mapping changes per destination.
            assert route["remote_type"] == "relay", route
            assert route["remote_address"][0] == PUB_ADDRESS, route


def test_media_call_between_symmetric_nats_is_relayed_and_decoded(lab: RunningLab) -> None:
    at_answerer, at_caller = lab.media_call("sym1", "sym2")
    for report in (at_answerer, at_caller):
        assert report["event"] == "media", report
        assert report["counts"]["audio"] >= 10, report
        assert report["counts"]["video"] >= 5, report
        assert report["size"] == [96, 64], report
        assert report["route"]["relayed"] is True, report


def test_tls_broker_hands_out_turn_over_https(lab: RunningLab) -> None:
    """A broker serving HTTPS/WSS (--sslkey/--sslcert): signaling and /ice over TLS."""
    outcome = lab.pair("sym1", "sym2", listener_ice="broker", caller_ice="broker", tls=True)
    assert outcome.caller_registered["ice"] == [[f"turn:{PUB_ADDRESS}:3478"]]
    listener, caller = outcome.routes
    assert listener["relayed"] is True, listener
    assert caller["relayed"] is True, caller


def test_udp_blocked_relays_through_turn_over_tcp(lab: RunningLab) -> None:
    outcome = lab.pair(
        "cone1",
        "noudp",
        listener_ice=[stun_server()],
        caller_ice=[turn_server("noudp", transport="tcp")],
    )
    listener, caller = outcome.routes
    assert caller["local_type"] == "relay", caller
    assert caller["relay_protocol"] == "tcp", caller
    assert caller["text"] == f"relayed via TURN {PUB_ADDRESS}:3478 (tcp)"
    assert listener["relayed"] is True, listener
    assert listener["remote_address"][0] == PUB_ADDRESS, listener


def test_no_ice_servers_across_nats_fails_with_an_explanation(lab: RunningLab) -> None:
    failed = lab.pair("cone1", "cone2", listener_ice=[], caller_ice=[], negotiation=4)
    assert failed.caller_result["event"] == "error", failed
    error = failed.caller_result["error"]
    assert "NegotiationFailedError" in error, error
    assert "ICE candidates here: 1 host; from the other side: 1 host; ICE servers: none." in error
    assert "No STUN or TURN server is configured" in error, error


def test_cone_to_symmetric_needs_turn(lab: RunningLab) -> None:
    # With STUN only, a port-restricted cone NAT drops the symmetric side's
    # checks (they come from a port it never sent to): ICE fails.
    failed = lab.pair(
        "cone1", "sym1", listener_ice=[stun_server()], caller_ice=[stun_server()], negotiation=4
    )
    assert failed.caller_result["event"] == "error", failed
    assert "NegotiationFailedError" in failed.caller_result["error"], failed
    error = failed.caller_result["error"]
    assert "ICE servers: STUN." in error, error
    assert "srflx" in error, error
    assert "no direct path works" in error, error
    assert "configure a TURN server" in error, error
    # With TURN offered, ICE relays.
    outcome = lab.pair(
        "cone1",
        "sym1",
        listener_ice=[stun_server(), turn_server("cone1")],
        caller_ice=[stun_server(), turn_server("sym1")],
    )
    listener, caller = outcome.routes
    assert listener["relayed"] is True, listener
    assert caller["relayed"] is True, caller


def _probe(lab: RunningLab, host: str, *args: str) -> dict[str, Any]:
    output = lab.lab.exec(host, [sys.executable, str(PROBE), *args], timeout=30)
    result: dict[str, Any] = json.loads(output)
    return result


def test_brokers_stun_reports_the_nat_mapping(lab: RunningLab) -> None:
    for host in ("cone1", "sym1", "lan1"):
        result = _probe(lab, host, "stun", PUB_ADDRESS, str(STUN_PORT))
        assert result["ok"] is True, result
        assert result["local"][0] == lab.addresses[host]
        assert result["mapped"][0] == lab.public[host], result


def test_coturn_takes_minted_credentials_and_refuses_expired_or_forged(lab: RunningLab) -> None:
    valid = turn_credentials("sym1")
    expired = turn_credentials("sym1", ttl=-60)
    forged = (valid[0], turn_credentials("sym1", secret="not-the-secret")[1])
    turn = (PUB_ADDRESS, "3478")
    result = _probe(lab, "sym1", "turn", *turn, *valid)
    assert result["ok"] is True, result
    assert result["relayed"][0] == PUB_ADDRESS
    result = _probe(lab, "noudp", "turn", *turn, *valid, "tcp")
    assert result["ok"] is True, result
    for bad in (expired, forged):
        result = _probe(lab, "sym1", "turn", *turn, *bad)
        assert result["ok"] is False, (bad, result)
        assert "401" in result["error"], result


#: Peer addresses in each range the documented coturn configuration denies.
DENIED_IPV4 = [
    "0.0.0.0", "0.255.255.255", "10.1.0.2", "100.64.0.1", "100.127.255.254", "127.0.0.1",
    "169.254.169.254", "172.16.0.1", "172.31.255.254", "192.0.0.8", "192.168.1.1",
    "198.18.0.1", "198.19.255.254", "224.0.0.1", "239.255.255.250", "240.0.0.1",
    "255.255.255.255",
]  # fmt: skip
DENIED_IPV6 = ["::1", "fe80::1", "fd00::1", "fc00::1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe"]


def test_coturn_refuses_relays_towards_non_public_addresses(lab: RunningLab) -> None:
    """Credentials anyone registered gets: CreatePermission to a non-public address is refused."""
    public = [lab.public["cone2"], "198.51.100.7", "8.8.8.8"]
    result = _probe(
        lab, "sym1", "permissions", PUB_ADDRESS, "3478", *turn_credentials("sym1"),
        *DENIED_IPV4, *DENIED_IPV6, *public,
    )  # fmt: skip
    assert result["ok"] is True, result
    verdicts = result["permissions"]
    for peer in DENIED_IPV4:
        assert verdicts[peer].startswith("403"), (peer, verdicts[peer])
    for peer in DENIED_IPV6:
        # The relay is IPv4 (the documented relay-ip): coturn answers 443 (family
        # mismatch) before it looks at the denied ranges, which a dual-stack
        # relay-ip needs.
        assert verdicts[peer].startswith(("403", "443")), (peer, verdicts[peer])
    for peer in public:
        assert verdicts[peer] == "granted", (peer, verdicts[peer])


def _tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_cli_sends_a_folder_between_symmetric_nats(lab: RunningLab, tmp_path: Path) -> None:
    """`peerpy send`/`receive` across symmetric NATs: relayed, hash-verified, route printed."""
    folder = tmp_path / "album"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(os.urandom(300_000))
    (folder / "sub" / "b.txt").write_text("hello from behind a symmetric NAT\n")
    output = tmp_path / "out"
    output.mkdir()
    env = dict(lab.env, PEERPY_SERVER=lab.broker_url)  # no ICE servers: ask the broker
    cli = [sys.executable, "-m", "peerpy.cli"]
    sender = lab.lab.spawn("sym1", [*cli, "send", str(folder)], env=env)
    try:
        line = read_line(sender, 20)
        assert line.startswith("Code: "), line
        code = line.removeprefix("Code: ").strip()
        receiver = lab.lab.spawn(
            "sym2", [*cli, "receive", code, "--yes", "-o", str(output)], env=env
        )
        try:
            _, receiver_err = receiver.communicate(timeout=60)
            assert receiver.returncode == 0, receiver_err.decode()
            _, sender_err = sender.communicate(timeout=20)
            assert sender.returncode == 0, sender_err.decode()
        finally:
            Lab.stop(receiver)
    finally:
        Lab.stop(sender)
    assert _tree(output / "album") == _tree(folder)
    for err in (receiver_err.decode(), sender_err.decode()):
        routes = [line for line in err.splitlines() if line.startswith("route: ")]
        assert len(routes) == 1, err
        assert routes[0].startswith("route: relayed via "), routes


def test_namespaces_of_a_killed_run_are_reaped(lab: RunningLab) -> None:
    dead = subprocess.Popen(["true"])  # a pid that is gone once waited for
    dead.wait()
    stale = f"pp{dead.pid}x0-pub"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in reap_stale_namespaces()
        assert not Path(f"/run/netns/{stale}").exists()
        assert lab.lab.namespaces[0] not in reap_stale_namespaces()  # ours: alive
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)
