"""Configuration: keywords win over PEERPY_* variables, which win over defaults."""

from __future__ import annotations

import pytest
from aiortc import RTCIceServer

from peerpy.config import (
    DEFAULT_SERVER,
    ServerAddress,
    parse_ice_servers,
    resolve_network,
    resolve_rtc_configuration,
    resolve_server,
)
from peerpy.exceptions import UsageError


def test_default_server_is_local() -> None:
    """With nothing set, peers use the bundled broker's default address on loopback."""
    assert resolve_server(environ={}) == ServerAddress.from_url(DEFAULT_SERVER)
    assert resolve_server(environ={}).base_url == "http://127.0.0.1:9000/"


def test_environment_then_keywords() -> None:
    """PEERPY_SERVER is used without keywords; keywords override its parts."""
    env = {"PEERPY_SERVER": "https://broker.example:8443/app"}
    address = resolve_server(environ=env)
    assert (address.host, address.port, address.path, address.secure) == (
        "broker.example",
        8443,
        "/app/",
        True,
    )
    assert resolve_server(server="http://10.0.0.1:1/", environ=env).host == "10.0.0.1"
    assert resolve_server(path="other", environ=env).path == "/other/"
    assert resolve_server(host="h", environ=env).base_url == "http://h:9000/"


def test_websocket_url_matches_peerjs() -> None:
    """The signaling URL is {path}peerjs?key&id&token&version, ws or wss."""
    address = ServerAddress.from_url("https://b.example/myapp/", key="k")
    url = address.websocket_url("alice", "tok", "1.5.5")
    assert url == "wss://b.example:443/myapp/peerjs?key=k&id=alice&token=tok&version=1.5.5"


@pytest.mark.parametrize("bad", ["ftp://x/", "127.0.0.1:9000", "http://", "http://h:99999/"])
def test_bad_server_url(bad: str) -> None:
    """A malformed broker URL is a UsageError naming the expected form."""
    with pytest.raises(UsageError, match="broker URL"):
        resolve_server(server=bad, environ={})


def test_ice_servers() -> None:
    """PEERPY_ICE_SERVERS: empty means none; TURN credentials as user:secret@."""
    assert parse_ice_servers("") == []
    servers = parse_ice_servers("stun:s.example:3478, turn:u:p@t.example:3478?transport=udp")
    assert servers[0].urls == "stun:s.example:3478"
    assert servers[1].urls == "turn:t.example:3478?transport=udp"
    assert (servers[1].username, servers[1].credential) == ("u", "p")
    with pytest.raises(UsageError):
        parse_ice_servers("http://not-ice")


def test_ice_servers_default_is_none_and_keywords_win() -> None:
    """No ICE server unless asked; the keyword beats the environment."""
    assert resolve_rtc_configuration(environ={}).iceServers == []
    env = {"PEERPY_ICE_SERVERS": "stun:env.example:1"}
    assert resolve_rtc_configuration(environ=env).iceServers[0].urls == "stun:env.example:1"
    chosen = resolve_rtc_configuration([RTCIceServer("stun:kw.example:1")], environ=env)
    assert chosen.iceServers[0].urls == "stun:kw.example:1"
    assert resolve_rtc_configuration([], environ=env).iceServers == []


def test_ice_addresses() -> None:
    """PEERPY_ICE_ADDRESSES restricts gathering; loopback-only also restricts remotes."""
    assert resolve_network(environ={}).local_addresses is None
    policy = resolve_network(environ={"PEERPY_ICE_ADDRESSES": "127.0.0.1"})
    assert policy.local_addresses == ("127.0.0.1",)
    assert policy.remote_networks is not None
    lan = resolve_network(["192.0.2.7"], environ={"PEERPY_ICE_ADDRESSES": "127.0.0.1"})
    assert lan.local_addresses == ("192.0.2.7",)
    assert lan.remote_networks is None
    with pytest.raises(UsageError):
        resolve_network(["not-an-ip"], environ={})
