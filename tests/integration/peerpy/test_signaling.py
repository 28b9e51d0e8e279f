"""The signaling session (peerpy.signaling) against the real broker over real sockets.

HEARTBEATs are what keep a registration alive (the broker drops a client
silent for ``alive_timeout``), and what is sent while the broker is away
waits in a queue bounded at ``MAX_QUEUED`` messages.  A Peer reaches a broker
over HTTPS/WSS with the system's trust store (no ssl_context).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from peerpy_protocol.messages import Relay, RelayType
from peerpy_server import Broker, BrokerConfig
from websockets.asyncio.client import connect

from peerpy.config import Timeouts, resolve_server
from peerpy.exceptions import NetworkError
from peerpy.peer import Peer
from peerpy.signaling import MAX_QUEUED, Signaling

pytestmark = pytest.mark.anyio

ALIVE = 1.0  # the broker's alive_timeout in these tests (default 60 s)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    config = BrokerConfig(host="127.0.0.1", port=0, path="/myapp", alive_timeout=ALIVE)
    async with Broker(config) as running:
        yield running


def ws_url(broker: Broker, peer_id: str) -> str:
    return "ws" + broker.url[4:] + f"peerjs?key=peerjs&id={peer_id}&token=t{peer_id}"


async def test_heartbeats_keep_an_idle_peer_registered(broker: Broker, peer_id: str) -> None:
    """An idle peer stays registered for 3 x alive_timeout, while a client that sends
    no HEARTBEAT is dropped after alive_timeout."""
    async with (
        connect(ws_url(broker, peer_id + "mute")) as mute,
        Peer(peer_id, server=broker.url, timeouts=Timeouts(heartbeat=ALIVE / 4)) as peer,
    ):
        assert json.loads(await mute.recv()) == {"type": "OPEN"}
        dropped: list[str] = []
        peer.on("disconnected", dropped.append)
        with anyio.fail_after(ALIVE * 3):
            while peer_id + "mute" in broker.realm:  # noqa: ASYNC110 - the broker's sweep
                await anyio.sleep(0.05)
        await anyio.sleep(ALIVE * 3)  # idle: nothing but heartbeats goes out
        assert peer_id in broker.realm
        assert peer.open
        assert dropped == []


async def test_the_queue_kept_while_the_broker_is_away_is_bounded(
    broker: Broker, peer_id: str
) -> None:
    """MAX_QUEUED messages wait for the next OPEN and then go out in order; one more is
    refused with a NetworkError naming the bound and what is dropped."""
    assert MAX_QUEUED == 1024
    signaling = Signaling(resolve_server(server=broker.url), timeouts=Timeouts())
    dst = peer_id + "dst"
    for seq in range(MAX_QUEUED):
        await signaling.send(Relay(RelayType.CANDIDATE, dst=dst, payload={"seq": seq}))
    with pytest.raises(NetworkError) as refused:
        await signaling.send(Relay(RelayType.CANDIDATE, dst=dst, payload={"seq": MAX_QUEUED}))
    message = str(refused.value)
    assert "not connected to the broker" in message
    assert f"{MAX_QUEUED} messages already wait" in message
    assert f"this CANDIDATE to {dst} is dropped" in message
    # Once registered, the queued messages reach dst, in order, and nothing else.
    async with connect(ws_url(broker, dst), max_size=None) as receiver:
        assert json.loads(await receiver.recv()) == {"type": "OPEN"}
        async with anyio.create_task_group() as tg:
            await tg.start(signaling.run, peer_id, "t" + peer_id, lambda message: None)
            seen = []
            with anyio.fail_after(10):
                while len(seen) < MAX_QUEUED:
                    frame = json.loads(await receiver.recv())
                    assert frame["type"] == "CANDIDATE"
                    assert frame["src"] == peer_id
                    seen.append(frame["payload"]["seq"])
            assert seen == list(range(MAX_QUEUED))
            # The refused one was not kept: the next message sent is the next to arrive.
            await signaling.send(Relay(RelayType.CANDIDATE, dst=dst, payload={"seq": "after"}))
            with anyio.fail_after(10):
                assert json.loads(await receiver.recv())["payload"] == {"seq": "after"}
            await signaling.aclose()


# -- over TLS ---------------------------------------------------------------


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[tuple[Broker, Path]]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(  # noqa: ASYNC221 - a one-off, before anything runs
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    config = BrokerConfig(
        host="127.0.0.1", port=0, ssl_certfile=str(cert), ssl_keyfile=str(key),
        turn_urls=("turn:127.0.0.1:3478",), turn_secret="s",
    )  # fmt: skip
    async with Broker(config) as broker:
        yield broker, cert


async def test_peer_uses_the_default_trust_store_for_wss(
    tls_broker: tuple[Broker, Path], peer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, cert = tls_broker
    assert broker.url.startswith("https://")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default verify paths
    monkeypatch.delenv("PEERPY_ICE_SERVERS")
    async with Peer(peer_id, server=broker.url) as peer:  # was: "ssl=None is incompatible"
        assert peer.open
        (turn,) = peer.configuration.iceServers or []  # /ice over HTTPS too
        assert turn.urls == ["turn:127.0.0.1:3478"]
