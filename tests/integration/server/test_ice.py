"""ICE servers from the broker: coturn REST-API credentials, GET /ice, the CLI flags."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from peerpy_server import Broker, BrokerConfig
from peerpy_server.cli import build_parser, config_from_args, main
from peerpy_server.ice import ice_servers, turn_credentials
from websockets.asyncio.client import connect

pytestmark = pytest.mark.anyio


def test_turn_credentials_follow_corturns_rest_api_scheme() -> None:
    username, credential = turn_credentials("s3cret", "alice", ttl=600, now=1_699_999_400.5)
    assert username == "1700000000:alice"
    # echo -n 1700000000:alice | openssl dgst -sha1 -hmac s3cret -binary | base64
    assert credential == "TtElzSjT0GdnTQ9xdcRNxx96yQs="


def test_ice_servers_name_our_stun_by_the_host_the_peer_used() -> None:
    common: dict[str, Any] = {"peer_id": "p", "now": 0.0, "turn_urls": (), "turn_secret": None,
                              "turn_ttl": 60.0}  # fmt: skip
    assert ice_servers(host_header="broker.example:9000", stun_port=3478, **common) == [
        {"urls": "stun:broker.example:3478"}
    ]
    assert ice_servers(host_header="[2001:db8::1]:9000", stun_port=3479, **common) == [
        {"urls": "stun:[2001:db8::1]:3479"}
    ]
    assert ice_servers(host_header="2001:db8::1", stun_port=3479, **common) == [
        {"urls": "stun:[2001:db8::1]:3479"}
    ]
    assert ice_servers(host_header="broker.example", stun_port=None, **common) == []


def get(url: str) -> tuple[int, str, str | None]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers["Content-Type"]


async def test_ice_endpoint_answers_registered_peers_only() -> None:
    config = BrokerConfig(
        host="127.0.0.1",
        port=0,
        path="/myapp",
        stun_port=0,
        turn_urls=("turn:turn.example:3478", "turn:turn.example:3478?transport=tcp"),
        turn_secret="s3cret",
        turn_ttl=600,
    )
    async with Broker(config) as broker:
        ws = f"ws://127.0.0.1:{broker.port}/myapp/peerjs?key=peerjs&id=alice&token=tok1"
        async with connect(ws + "&version=1.5.5") as socket:
            assert json.loads(await socket.recv())["type"] == "OPEN"
            base = f"{broker.url}peerjs/ice"
            started = time.time()
            status, body, content_type = await asyncio.to_thread(get, f"{base}?id=alice&token=tok1")
            assert status == 200
            assert content_type is not None
            assert content_type.startswith("application/json")
            stun, turn = json.loads(body)
            assert stun == {"urls": f"stun:127.0.0.1:{broker.stun_port}"}
            assert turn["urls"] == list(config.turn_urls)
            expiry, _, name = turn["username"].partition(":")
            assert name == "alice"
            assert started + 600 - 2 <= int(expiry) <= time.time() + 600
            expected = hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()
            assert base64.b64decode(turn["credential"]) == expected
            for query in ("id=alice&token=wrong", "id=bob&token=tok1", "id=alice", "token=tok1",
                          "", "id=&token="):  # fmt: skip
                status, body, _ = await asyncio.to_thread(get, f"{base}?{query}")
                assert (status, body) == (401, "Unauthorized"), query
        # Gone from the realm: refused again.
        status, _, _ = await asyncio.to_thread(get, f"{base}?id=alice&token=tok1")
        assert status == 401


async def test_ice_endpoint_without_servers_answers_an_empty_list() -> None:
    async with Broker(BrokerConfig(host="127.0.0.1", port=0)) as broker:
        ws = f"ws://127.0.0.1:{broker.port}/peerjs?key=peerjs&id=alice&token=tok1&version=1.5.5"
        async with connect(ws) as socket:
            assert json.loads(await socket.recv())["type"] == "OPEN"
            status, body, _ = await asyncio.to_thread(
                get, f"{broker.url}peerjs/ice?id=alice&token=tok1"
            )
            assert (status, body) == (200, "[]")


def test_cli_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["-p", "9000", "--stun", "--stun-port", "3479", "--turn-url",
         "turn:a.example:3478, turn:a.example:3478?transport=tcp",
         "--turn-secret", "s", "--turn-ttl", "120"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.stun_port == 3479
    assert config.turn_urls == ("turn:a.example:3478", "turn:a.example:3478?transport=tcp")
    assert config.turn_secret == "s"
    assert config.turn_ttl == 120
    assert "s" not in repr(config).split("turn_secret")[-1][:5]  # the secret is not shown
    plain = config_from_args(parser.parse_args(["-p", "9000", "--stun-port", "1"]))
    assert (plain.stun_port, plain.turn_urls, plain.turn_secret) == (None, (), None)


def test_cli_refuses_turn_without_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-p", "9000", "--turn-url", "turn:a.example:3478"]) == 1
    assert "--turn-url needs --turn-secret" in capsys.readouterr().err
    with pytest.raises(ValueError, match="turn: or turns:"):
        BrokerConfig(turn_urls=("stun:a.example",), turn_secret="s")
