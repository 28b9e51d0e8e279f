"""A Peer reaches a broker over HTTPS/WSS with the system's trust store (no ssl_context)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from peerpy_server import Broker, BrokerConfig

from peerpy import Peer

pytestmark = pytest.mark.anyio


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
