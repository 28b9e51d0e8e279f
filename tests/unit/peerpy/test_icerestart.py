"""The ICE-restart capability (peerpy.icerestart): on the wire and agreed by both sides."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from peerpy_protocol.payloads import (
    AnswerPayload,
    ConnectionType,
    OfferPayload,
    Resume,
    SessionDescription,
)

from peerpy.backends import get_backend
from peerpy.icerestart import IceRestart


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
