"""peerpy.generation's retry timing: back on the network, the next generation goes at once.

The originator's attempts are offered to a fake connection (the fakes of
test_resumption.py); the attempt and backoff timers are made far longer than
the test's bound, so an offer within it can only come from the registration.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import anyio
import anyio.abc
import pytest
from peerpy_protocol.messages import Relay
from peerpy_protocol.payloads import ConnectionType

from peerpy.exceptions import PeerError
from peerpy.registry import Registry

from .test_resumption import _Backend, _Conn, _Owner

pytestmark = pytest.mark.anyio


class _Broker(_Owner):
    """An owner whose broker takes the answering side's probes."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        super().__init__(tg)
        self.relayed: list[Relay] = []

    async def _send_relay(self, message: Relay) -> None:
        self.relayed.append(message)


def _long_backoff(initial: float, maximum: float) -> Iterator[float]:
    return itertools.repeat(1000.0)


async def test_registering_again_offers_the_next_generation_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our broker session registered again during an attempt (offered while the network
    was down) and during a backoff: each time the next generation is offered at once,
    not after the attempt's ATTEMPT seconds or the backoff (the registry tells each
    resuming connection)."""
    monkeypatch.setattr("peerpy.generation.backoff_delays", _long_backoff)
    monkeypatch.setattr("peerpy.generation.ATTEMPT", 1000.0)
    monkeypatch.setattr("peerpy.generation.backends.backend_of", lambda pc: _Backend())
    async with anyio.create_task_group() as tg:
        conn = _Conn(_Owner(tg), timed_out={2})  # generation 2's attempt fails at once
        resumable = conn._resumable
        assert resumable is not None
        switch = resumable.switch
        with anyio.fail_after(5):
            switch.lost(PeerError("no ICE consent"))
            await anyio.wait_all_tasks_blocked()
            assert conn.offers == [1]  # waiting for generation 1
            registry = Registry()  # what the broker session tells on registering again
            registry.add(conn)  # type: ignore[arg-type]
            registry.registered_again()  # during the attempt
            await anyio.wait_all_tasks_blocked()
            assert conn.offers == [1, 2]  # generation 2 failed: backing off now
            switch.registered()  # during the backoff
            await anyio.wait_all_tasks_blocked()
            assert conn.offers == [1, 2, 3]
        tg.cancel_scope.cancel()


async def test_registering_again_changes_nothing_unless_resuming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An open connection, or the answering side (which only answers), offers nothing."""
    monkeypatch.setattr("peerpy.generation.backoff_delays", _long_backoff)
    monkeypatch.setattr("peerpy.generation.ATTEMPT", 1000.0)
    async with anyio.create_task_group() as tg:
        conn = _Conn(_Broker(tg), timed_out=set())
        conn.type = ConnectionType.DATA  # type: ignore[attr-defined]
        assert conn._resumable is not None
        switch = conn._resumable.switch
        switch.registered()  # open: nothing to resume
        await anyio.wait_all_tasks_blocked()
        assert conn.offers == []
        assert not switch.active
        conn.originator = False  # type: ignore[misc]
        with anyio.fail_after(5):
            switch.lost(PeerError("no ICE consent"))
            await anyio.wait_all_tasks_blocked()
            switch.registered()
            await anyio.wait_all_tasks_blocked()
        assert conn.offers == []
        assert switch.active  # still waiting for the originator's OFFER
        tg.cancel_scope.cancel()


async def test_no_generation_is_offered_while_our_broker_session_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While our broker session is down an OFFER would only wait in the signaling queue
    and reach the remote stale: the originator offers the next generation once the
    session registered again, at once."""
    monkeypatch.setattr("peerpy.generation.backoff_delays", _long_backoff)
    monkeypatch.setattr("peerpy.generation.ATTEMPT", 1000.0)
    monkeypatch.setattr("peerpy.generation.backends.backend_of", lambda pc: _Backend())
    async with anyio.create_task_group() as tg:
        owner = _Owner(tg)
        owner.open = False
        conn = _Conn(owner, timed_out=set())
        assert conn._switch is not None
        switch = conn._switch
        with anyio.fail_after(5):
            switch.lost(PeerError("no ICE consent"))
            await anyio.sleep(0.1)
            assert conn.offers == []  # offline: nothing offered, nothing queued
            owner.open = True
            switch.registered()
            await anyio.wait_all_tasks_blocked()
            assert conn.offers == [1]
        tg.cancel_scope.cancel()
