"""Direct whenever possible: peers given STUN and TURN relay only when no direct path works.

Runs in the NAT lab (tests/lab, see tests/lab/test_netlab.py for what it needs);
each peer gets the broker's STUN and a TURN server, as operators configure.
"""

from __future__ import annotations

from typing import Any

import pytest

from peerpy.backends import wrtc_installed

from .fixture import RunningLab, busy, stun_server, turn_server

pytestmark = [pytest.mark.netlab, pytest.mark.timeout(120)]
#: The module-scoped lab (coturn and the broker in pub), built for this module.

#: (listener, caller) backends; the caller controls ICE.  A wrtc caller is not
#: covered: libwebrtc may select a relayed pair first, and an aiortc listener
#: cannot always follow its switch to the direct pair (docs/network.md).
PAIRS = [("aiortc", "aiortc"), ("wrtc", "aiortc")]
#: Runs per backend pair of the cone case: the race it guards against was lost 2 times in 6.
RUNS = 3


def _servers(host: str) -> list[dict[str, str]]:
    return [stun_server(), turn_server(host)]


def _needs(backends: tuple[str, str]) -> None:
    if "wrtc" in backends and not wrtc_installed():
        pytest.skip("wrtc is not installed (pip install 'peerpy-sdk[wrtc]')")


@pytest.mark.parametrize("backends", PAIRS, ids=["/".join(p) for p in PAIRS])
def test_cone_nats_with_stun_and_turn_connect_directly(
    lab: RunningLab, backends: tuple[str, str]
) -> None:
    """Two cone NATs, STUN and TURN offered, the machine busy: direct on both sides, every run.

    The aiortc caller (ICE controlling) holds relayed pairs back, so the route
    is direct from the start and stays so.
    """
    _needs(backends)
    with busy(1, seconds=60):
        for _ in range(RUNS):
            outcome = lab.pair(
                "cone1",
                "cone2",
                listener_ice=_servers("cone1"),
                caller_ice=_servers("cone2"),
                backends=backends,
            )
            assert outcome.listener_closed is not None, outcome
            ended = (outcome.listener_closed["route"], outcome.caller_result["route"])
            for route in (*outcome.routes, *ended):
                assert route["relayed"] is False, outcome
                assert route["text"].startswith("direct, "), route
            assert ended[1]["remote_address"][0] == lab.public["cone1"], ended


@pytest.mark.parametrize("backends", [("aiortc",) * 2, ("wrtc",) * 2], ids=["aiortc", "wrtc"])
def test_symmetric_nats_still_relay_and_open_promptly(
    lab: RunningLab, backends: tuple[str, str]
) -> None:
    """Only a relay works between two symmetric NATs: relayed, open within a few seconds."""
    _needs(backends)
    servers = {"listener_ice": _servers("sym1"), "caller_ice": _servers("sym2")}
    outcome = lab.pair("sym1", "sym2", **servers, backends=backends)
    for route in outcome.routes:
        assert route["relayed"] is True, route
    opened: dict[str, Any] | None = outcome.caller_open
    assert opened is not None
    # The hold is 1 s; without it this opened in 0.2-0.6 s (docs/network.md).
    assert opened["opened_in"] < 4.0, opened
