"""NegotiationFailedError explains what ICE gathered and the likely fix (pure diagnoses).

The NAT lab (tests/lab/test_netlab.py) checks the real messages of failed connections.
"""

from __future__ import annotations

import pytest

from peerpy.diagnosis import IceSummary, explain


def summary(local: str, remote: str, *, stun: bool = False, turn: bool = False,
            local_loopback: bool = False, remote_loopback: bool = False) -> IceSummary:  # fmt: skip
    def counts(text: str) -> dict[str, int]:
        return {kind: int(n) for n, kind in (part.split() for part in text.split(",") if part)}

    return IceSummary(counts(local), counts(remote), stun, turn, local_loopback, remote_loopback)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (summary("1 host", ""), "sent no candidates"),
        (summary("1 host", "1 host", local_loopback=True), "loopback only"),
        (summary("2 host", "1 host"), "No STUN or TURN server is configured"),
        (summary("1 host", "1 host", stun=True, turn=True), "gave this side no relay"),
        (summary("1 host,1 relay", "1 host", stun=True, turn=True), "Even the relay"),
        (summary("1 host", "1 host,1 relay", stun=True), "Even the relay"),
        (summary("1 host", "1 host,1 srflx", stun=True), "STUN server did not answer"),
        (summary("1 host,1 srflx", "1 host,1 srflx", stun=True), "configure a TURN server"),
    ],
)
def test_diagnoses(case: IceSummary, expected: str) -> None:
    assert expected in explain(case)


def test_states_what_was_gathered() -> None:
    text = explain(summary("1 host,1 srflx", "2 host,1 prflx", stun=True))
    assert text.startswith(
        "ICE candidates here: 1 host, 1 srflx; from the other side: 2 host, 1 prflx; "
        "ICE servers: STUN."
    )
    assert "ICE servers: none." in explain(summary("1 host", "1 host"))
    assert "ICE servers: STUN and TURN." in explain(
        summary("1 host", "1 host", stun=True, turn=True)
    )
