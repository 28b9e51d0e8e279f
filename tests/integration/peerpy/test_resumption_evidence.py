"""Evidence of a network change on a resumable connection (peerpy.generation, real peers).

The side whose own address went away starts resuming at once; the other side,
whose path still looks alive, learns it through the broker (the new
generation's OFFER, or the answering side's probe) instead of waiting for ICE
to fail, and both report it as a network change
(``DataConnection.network_change``), which a transfer waits on.
"""

from __future__ import annotations

import anyio
import pytest

from peerpy.generation import probe, probed
from peerpy.peer import Peer

pytestmark = pytest.mark.anyio


def test_a_probe_names_its_generation_and_no_candidate_is_taken_for_one() -> None:
    """The answering side's probe carries its generation; an end-of-candidates or a real
    candidate is no probe."""
    assert probed(probe(3)) == 3
    assert probed(probe(3).__class__("", "0", 0)) is None  # an older peerpy's probe, or EOC
    real = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
    assert probed(probe(0).__class__(real, "peerpy-resume-0", 0)) is None


@pytest.mark.parametrize("lost_side", ["originator", "answerer"])
async def test_the_side_that_lost_its_path_makes_the_other_resume_at_once(
    url: str, peer_id: str, lost_side: str
) -> None:
    """When one side's own path is gone (as pathloss finds it), the other side, whose
    connection still looks open, starts resuming within a second or two (not after ICE
    fails), both sides see a network change while resuming, and the stream goes on."""
    async with (
        Peer(peer_id + "a", server=url) as alice,
        Peer(peer_id + "b", server=url) as bob,
    ):
        conn = await alice.connect(peer_id + "b", reliable=True)
        incoming = await bob.accept()
        lost, other = (conn, incoming) if lost_side == "originator" else (incoming, conn)
        seen: list[str] = []  # the other side's evidence, while it resumes
        assert lost._resumable is not None
        lost._switch.path_gone("our address 203.0.113.9 is gone")  # as pathloss does
        assert lost.network_change == "our address 203.0.113.9 is gone"
        with anyio.fail_after(3):  # ICE (remote_gone) would notice after 8 s
            while not seen:
                if other.network_change is not None:
                    seen.append(other.network_change)
                await anyio.sleep(0.005)
        assert peer_id + "a" in seen[0] or peer_id + "b" in seen[0], seen
        with anyio.fail_after(20):
            while conn.reconnecting or incoming.reconnecting:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert conn.generation == incoming.generation >= 1
        assert conn.network_change is None  # resumed: no longer resuming
        await conn.send("after")
        with anyio.fail_after(10):
            assert await incoming.recv() == "after"
