"""The broker's ICE servers (peerpy.ice): the refresh schedule on a fake clock, one retry."""

from __future__ import annotations

import logging

import pytest
from aiortc import RTCConfiguration, RTCIceServer

from peerpy import ice
from peerpy.exceptions import NetworkError, ServerError
from peerpy.ice import MIN_DELAY, REFRESH_AT, STALE_DELAY, BrokerIce, expiry_of, refresh_delay

STUN = RTCIceServer(urls="stun:broker.example:3478")


def turn(expiry: int, peer_id: str = "alice") -> RTCIceServer:
    return RTCIceServer(urls="turn:t.example", username=f"{expiry}:{peer_id}", credential="c")


def test_the_expiry_is_read_from_rest_api_usernames() -> None:
    """The earliest ``<unix>:<id>`` wins; STUN and static usernames expire never."""
    assert expiry_of([STUN, turn(2000), turn(1500, "a:b")]) == 1500
    static = RTCIceServer(urls="turn:t.example", username="user", credential="pw")
    assert expiry_of([STUN, static]) is None
    assert expiry_of([RTCIceServer(urls="turn:t", username=":x", credential="c")]) is None
    assert expiry_of([]) is None


def test_credentials_are_fetched_again_before_they_expire() -> None:
    """After REFRESH_AT of the time left, never sooner than MIN_DELAY; nothing to refresh
    without expiring credentials; already expired (clock skew, failed refreshes): slowly."""
    assert refresh_delay([STUN], now=0.0) is None
    assert refresh_delay([STUN, turn(3600)], now=0.0) == pytest.approx(3600 * REFRESH_AT)
    assert refresh_delay([turn(1000)], now=999.5) == MIN_DELAY
    assert refresh_delay([turn(1000)], now=1000.5) == STALE_DELAY
    # However long the TTL, the next fetch comes before the expiry.
    for ttl in (2, 3, 60, 3600, 86400):
        delay = refresh_delay([turn(ttl)], now=0.0)
        assert delay is not None
        assert delay < ttl


class Host:
    configuration = RTCConfiguration()


class Broker:
    """Answers /ice from a script of results (servers, or an exception to raise)."""

    def __init__(self, *answers: list[RTCIceServer] | Exception) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def fetch(self) -> list[RTCIceServer]:
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ice, "RETRY_DELAY", 0.0)


@pytest.mark.anyio
async def test_a_refusal_is_a_warning_and_is_retried_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """401 then 200 (a load balancer's other instance): the servers are used."""
    host, broker = Host(), Broker(ServerError("refused (HTTP 401)"), [STUN])
    with caplog.at_level(logging.WARNING):
        await BrokerIce(host, broker.fetch, logging.getLogger("t")).start()
    assert host.configuration.iceServers == [STUN]
    assert broker.asked == 2
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "HTTP 401" in caplog.records[0].getMessage()


@pytest.mark.anyio
async def test_two_refusals_leave_no_servers_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    host, broker = Host(), Broker(ServerError("refused (HTTP 401)"), ServerError("(HTTP 429)"))
    with caplog.at_level(logging.WARNING):
        await BrokerIce(host, broker.fetch, logging.getLogger("t")).start()
    assert host.configuration.iceServers == []
    assert broker.asked == 2
    assert "no STUN/TURN servers" in caplog.records[-1].getMessage()


@pytest.mark.anyio
async def test_an_unreachable_broker_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    host, broker = Host(), Broker(NetworkError("cannot reach the broker"))
    with caplog.at_level(logging.WARNING):
        await BrokerIce(host, broker.fetch, logging.getLogger("t")).start()
    assert (host.configuration.iceServers, broker.asked) == ([], 1)
    assert "cannot reach the broker" in caplog.records[0].getMessage()


@pytest.mark.anyio
async def test_keep_fresh_returns_at_once_without_expiring_credentials() -> None:
    host, broker = Host(), Broker([STUN])
    keeper = BrokerIce(host, broker.fetch, logging.getLogger("t"))
    await keeper.start()
    await keeper.keep_fresh()  # nothing to refresh: returns
    assert broker.asked == 1
