"""The ``peerjs`` broker preset: PeerJS 1.5.5's own defaults, resolved with no network at all.

The expected values are read from the real ``peerjs`` npm package of the test
support folder (its CommonJS build), not copied by hand: the preset must be
what ``new Peer()`` uses in a browser.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from peerpy import Peer
from peerpy.cli.options import receive_command
from peerpy.config import (
    DEFAULT_SERVER,
    PEERJS_CLOUD,
    resolve_ice,
    resolve_server,
    resolve_servers,
)

BUNDLE = Path(__file__).parents[2] / "support" / "node_modules" / "peerjs" / "dist" / "bundler.cjs"


def peerjs_defaults() -> dict[str, Any]:
    """CLOUD_HOST, CLOUD_PORT, DEFAULT_KEY and DEFAULT_CONFIG.iceServers of PeerJS's build."""
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} is missing: run scripts/test (it installs the npm packages)")
    text = BUNDLE.read_text()
    assert '"version": "1.5.5"' in (BUNDLE.parents[1] / "package.json").read_text()
    literal = re.search(r"DEFAULT_CONFIG = (\{\n.*?\n\});", text, re.DOTALL)
    assert literal is not None
    as_json = re.sub(r"^(\s*)(\w+):", r'\1"\2":', literal[1], flags=re.MULTILINE)
    host = re.search(r'CLOUD_HOST = "([^"]+)"', text)
    port = re.search(r"CLOUD_PORT = (\d+)", text)
    key = re.search(r'DEFAULT_KEY = "([^"]+)"', text)
    assert host is not None
    assert port is not None
    assert key is not None
    return {
        "host": host[1],
        "port": int(port[1]),
        "key": key[1],
        "ice": json.loads(as_json)["iceServers"],
    }


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name lookup or connection fails the test: the preset is pure configuration."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during the test: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket.socket, "sendto", refuse)


def ice_triples(servers: list[Any]) -> set[tuple[str, str | None, str | None]]:
    found = set()
    for server in servers:
        fields = server if isinstance(server, dict) else vars(server)
        urls = fields["urls"]
        for url in [urls] if isinstance(urls, str) else urls:
            found.add((url, fields.get("username"), fields.get("credential")))
    return found


@pytest.mark.usefixtures("offline")
def test_the_preset_is_peerjs_own_broker_and_ice_servers() -> None:
    expected = peerjs_defaults()
    address = resolve_server(server="peerjs", environ={})
    assert (address.host, address.port, address.path, address.secure, address.key) == (
        expected["host"], expected["port"], "/", True, expected["key"],
    )  # fmt: skip
    assert address.base_url == PEERJS_CLOUD
    configuration, from_broker = resolve_ice(None, None, servers=[address], environ={})
    assert from_broker is False
    assert ice_triples(configuration.iceServers) == ice_triples(expected["ice"])


@pytest.mark.usefixtures("offline")
def test_peer_environment_and_cli_resolve_the_preset_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Peer(server="peerjs") and PEERPY_SERVER=peerjs only configure; nothing is contacted."""
    monkeypatch.delenv("PEERPY_ICE_SERVERS")  # the suite's "none" would win over the preset
    expected = ice_triples(peerjs_defaults()["ice"])
    peer = Peer("alice", server="peerjs", backend="aiortc")
    assert peer.server.base_url == PEERJS_CLOUD
    assert ice_triples(peer.configuration.iceServers) == expected
    (from_env,) = resolve_servers(environ={"PEERPY_SERVER": "PeerJS"})
    assert from_env.base_url == PEERJS_CLOUD
    # Explicit ICE settings still win over the preset's (an empty list: none at all).
    configuration, _ = resolve_ice(
        None, None, servers=[from_env], environ={"PEERPY_ICE_SERVERS": ""}
    )
    assert configuration.iceServers == []
    assert receive_command("7-a-b", "peerjs", None) == "peerpy receive --server peerjs 7-a-b"


def test_the_preset_is_never_a_default() -> None:
    assert resolve_server(environ={}).base_url == DEFAULT_SERVER
    configuration, from_broker = resolve_ice(
        None, None, servers=resolve_servers(environ={}), environ={}
    )
    assert from_broker is True  # ask the broker, not PeerJS's servers
    assert configuration.iceServers == []
