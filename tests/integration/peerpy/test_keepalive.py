"""The signaling keepalive (peerpy.keepalive) against the real broker in its own process.

A broker that stops answering (SIGSTOP: its socket stays open, nothing comes
back) is noticed by the ping's ``Timeouts.broker_gone``, not by TCP, and
``auto_reconnect`` registers again once it answers.  The address check
(:func:`~peerpy.keepalive.address_gone`) tells a local address from one this
host does not have, and from one it would not reach the remote from.
"""

from __future__ import annotations

import signal
import subprocess

import anyio
import pytest

from peerpy.config import Timeouts
from peerpy.exceptions import NetworkError
from peerpy.keepalive import address_gone
from peerpy.peer import Peer
from tests.helpers.processes import broker_process

pytestmark = pytest.mark.anyio

GONE = 1.0  # Timeouts.broker_gone in these tests (default 5 s)


async def test_a_frozen_broker_is_gone_within_the_bound_and_rejoined_when_it_answers(
    peer_id: str,
) -> None:
    """SIGSTOP the broker: `error` (no pong) and `disconnected` within 1.5 x broker_gone;
    SIGCONT: auto_reconnect registers the same id again."""
    async with broker_process() as broker:
        assert broker.process is not None
        try:
            await frozen_and_back(broker.process, broker.url, peer_id)
        finally:
            broker.process.send_signal(signal.SIGCONT)  # SIGKILL works on it either way


async def frozen_and_back(process: subprocess.Popen[bytes], url: str, peer_id: str) -> None:
    timeouts = Timeouts(broker_gone=GONE, open=2.0, reconnect_max=0.5)
    errors: list[BaseException] = []
    disconnected, reopened = anyio.Event(), anyio.Event()
    async with Peer(peer_id, server=url, timeouts=timeouts, auto_reconnect=True) as peer:
        peer.on("error", errors.append)
        peer.on("disconnected", lambda _id: disconnected.set())
        await anyio.sleep(2 * GONE)  # pongs come: the session stays up
        assert peer.open
        assert not errors
        process.send_signal(signal.SIGSTOP)
        stopped = anyio.current_time()
        with anyio.fail_after(10):
            await disconnected.wait()
        noticed = anyio.current_time() - stopped
        peer.on("open", lambda _id: reopened.set())  # not open now: no replay
        assert isinstance(errors[0], NetworkError)
        assert "answered no ping" in str(errors[0])
        assert noticed <= 1.5 * GONE + 0.5, noticed
        process.send_signal(signal.SIGCONT)
        with anyio.fail_after(10):
            await reopened.wait()
        assert peer.open
        assert peer.id == peer_id


def test_the_address_check_tells_our_addresses_from_others() -> None:
    """From 127.0.0.1 to 127.0.0.1: current.  192.0.2.1 (TEST-NET-1) is not ours: gone.
    127.0.0.2 is ours (lo holds 127/8) but 127.0.0.1 is reached from 127.0.0.1: gone."""
    broker = ("127.0.0.1", 9000)
    assert address_gone(("127.0.0.1", 40000), broker) is None
    assert address_gone(("192.0.2.1", 40000), broker) == "our address 192.0.2.1 is gone"
    assert address_gone(("127.0.0.2", 40000), broker) == (
        "the route to the broker now leaves from 127.0.0.1, not from our 127.0.0.2"
    )
    assert address_gone(("127.0.0.1", 40000), ("192.0.2.1", 9000)) is None  # no route: unknown
