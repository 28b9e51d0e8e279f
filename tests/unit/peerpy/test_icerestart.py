"""ICE restarts (peerpy.icerestart): the capability on the wire and agreed by both sides,
and the pair rule, on a scripted backend.

:meth:`IceRestart._working_pair` decides from libwebrtc's ICE state and selected
pair, polled; a fake backend plays those as a script, so each case is
deterministic: a new pair at once; the old pair only once the path is seen
working again (ICE back after a disconnect) and after OLD_PAIR_GRACE; never a
pair from an address that is gone.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from peerpy_protocol.payloads import (
    AnswerPayload,
    ConnectionType,
    OfferPayload,
    Resume,
    SessionDescription,
)

from peerpy import icerestart
from peerpy.backends import get_backend
from peerpy.icerestart import IceRestart
from peerpy.route import Route


def test_the_flag_round_trips_and_is_absent_when_false() -> None:
    """``iceRestart`` rides in peerpyResume only when true: an aiortc peer's payloads, and
    those of peers before it, are unchanged."""
    sdp = SessionDescription("offer", "v=0")
    offer = OfferPayload(sdp, ConnectionType.DATA, "dc_1", resume=Resume(0, 4096, ice_restart=True))
    assert offer.to_json()["peerpyResume"] == {
        "version": 1,
        "generation": 0,
        "window": 4096,
        "iceRestart": True,
    }
    assert OfferPayload.from_json(offer.to_json()).resume == Resume(0, 4096, ice_restart=True)
    plain = AnswerPayload(sdp, ConnectionType.DATA, "dc_1", Resume(3, 4096)).to_json()
    assert "iceRestart" not in plain["peerpyResume"]
    assert AnswerPayload.from_json(plain).resume == Resume(3, 4096)
    assert get_backend("aiortc").restarts_ice is False


def _restart(backend_restarts: bool) -> IceRestart:
    backend = SimpleNamespace(restarts_ice=backend_restarts)
    conn: Any = SimpleNamespace(_backend=backend, _channel=SimpleNamespace(readyState="open"))
    return IceRestart(switch=Any, conn=conn, logger=logging.getLogger("test"))


@pytest.mark.parametrize(
    ("mine", "theirs", "agreed"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_a_restart_is_tried_only_when_both_sides_can(
    mine: bool, theirs: bool, agreed: bool
) -> None:
    """Mixed pairs (aiortc on one side) never restart ICE: they make new peer connections."""
    restart = _restart(mine)
    restart.agree(Resume(0, 4096, ice_restart=theirs))
    assert restart.agreed is agreed
    assert restart.possible is agreed


def test_no_restart_once_the_channel_closed() -> None:
    """A closed channel cannot carry on after a restart: a new peer connection instead."""
    restart = _restart(True)
    restart.agree(Resume(0, 4096, ice_restart=True))
    restart._conn._channel.readyState = "closed"
    assert not restart.possible


OLD = Route("srflx", "srflx", ("198.51.100.7", 4000), ("198.51.100.9", 5000), "udp")
NEW = Route("srflx", "srflx", ("198.51.100.7", 4002), ("198.51.100.9", 5002), "udp")
#: A host pair from an address this machine does not have.
GONE = Route("host", "host", ("203.0.113.250", 4000), ("203.0.113.251", 5000), "udp")


class _Backend:
    """ICE state and selected pair as the test sets them."""

    def __init__(self, connected: bool, route: Route | None) -> None:
        self.connected = connected
        self.route = route

    def ice_connected(self, pc: object) -> bool:
        return self.connected

    def route_of(self, pc: object) -> Route | None:
        return self.route


class _Conn:
    """What IceRestart reads of a DataConnection."""

    def __init__(self, backend: _Backend) -> None:
        self._backend = backend
        self.peer_connection = object()


def _agreed(connected: bool, route: Route | None) -> tuple[IceRestart, _Conn]:
    """An agreed restart, ``route`` selected and ICE ``connected``; not begun."""
    conn = _Conn(_Backend(connected, route))
    restart = IceRestart(None, conn, None)  # type: ignore[arg-type]
    restart.agreed = True
    return restart, conn


def _begun(connected: bool, route: Route | None) -> tuple[IceRestart, _Conn]:
    """An agreed restart that began with ``route`` selected and ICE ``connected``."""
    restart, conn = _agreed(connected, route)
    restart._begin()
    return restart, conn


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """OLD_PAIR_GRACE of 0.1 s, to keep the waits short."""
    monkeypatch.setattr(icerestart, "OLD_PAIR_GRACE", 0.1)


async def _found_within(restart: IceRestart, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        return await restart._working_pair(object())  # type: ignore[arg-type]
    return False


@pytest.mark.anyio
async def test_a_new_pair_is_taken_at_once() -> None:
    restart, conn = _begun(connected=True, route=OLD)
    conn._backend.route = NEW
    assert await _found_within(restart, 0.2)


@pytest.mark.anyio
async def test_the_old_pair_is_taken_after_ice_came_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A link outage: ICE seen disconnected, then connected on the old pair, which
    libwebrtc keeps: resumed there, after OLD_PAIR_GRACE (no new pair came)."""
    monkeypatch.setattr(icerestart, "OLD_PAIR_GRACE", 0.3)
    restart, conn = _begun(connected=False, route=OLD)

    async def link_back() -> None:
        await anyio.sleep(0.2)
        conn._backend.connected = True

    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(link_back)
        assert await _found_within(restart, 2.0)
    assert anyio.current_time() - started >= 0.2 + 0.3


@pytest.mark.anyio
@pytest.mark.usefixtures("short_grace")
async def test_ice_down_at_the_loss_counts() -> None:
    """ICE disconnected when the path was lost but connected again before the restart
    began (the remote registered again later): the old pair is taken."""
    restart, conn = _agreed(connected=False, route=OLD)
    restart.lost()
    conn._backend.connected = True
    restart._begin()
    assert await _found_within(restart, 1.0)


@pytest.mark.anyio
async def test_the_old_pair_alone_is_not_enough() -> None:
    """ICE "connected" on the pair from before, never seen down: the state may be stale
    (the remote's address changed; libwebrtc names the new pair up to seconds late), so
    no resume past OLD_PAIR_GRACE either, until a new pair comes."""
    restart, conn = _begun(connected=True, route=OLD)
    assert not await _found_within(restart, icerestart.OLD_PAIR_GRACE + 0.3)
    conn._backend.route = NEW
    assert await _found_within(restart, 0.2)


@pytest.mark.anyio
@pytest.mark.usefixtures("short_grace")
async def test_a_pair_from_a_gone_address_is_never_taken() -> None:
    restart, conn = _begun(connected=False, route=OLD)
    conn._backend.connected, conn._backend.route = True, GONE
    assert not await _found_within(restart, 0.5)
