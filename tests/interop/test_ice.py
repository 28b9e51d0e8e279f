"""The three lines docs/broker.md gives a PeerJS page to take its ICE servers from our broker.

The real PeerJS 1.5.5 in Chromium registers on our broker (with --stun and
--turn-*), then runs the documented lines: fetch ``{path}peerjs/ice`` with its
id and token, and put the answer in ``peer.options.config``, which PeerJS uses
for every new RTCPeerConnection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator

import pytest
from peerpy_protocol.ids import random_token
from peerpy_server import Broker, BrokerConfig
from playwright.async_api import BrowserContext

from .browser import StaticServer, open_page

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

# The lines of docs/broker.md, with the broker's base URL as a parameter.
DOCUMENTED_LINES = """
async ([name, base]) => {
  const peer = window.harness.peers[name].peer;
  const id = peer.id;
  const url = `${base}peerjs/ice?id=${id}&token=${peer.options.token}`;
  peer.options.config = { ...peer.options.config, iceServers: await (await fetch(url)).json() };
  return peer.options.config;
}
"""


@pytest.fixture(scope="module")
async def ice_broker() -> AsyncIterator[Broker]:
    config = BrokerConfig(
        host="127.0.0.1", port=0, path="/myapp", stun_port=0,
        turn_urls=("turn:127.0.0.1:3478",), turn_secret="s3cret",
    )  # fmt: skip
    async with Broker(config) as broker:
        yield broker


async def test_peerjs_page_takes_ice_servers_from_the_broker(
    chromium: BrowserContext, static_server: StaticServer, ice_broker: Broker
) -> None:
    async with open_page(chromium, static_server.origin) as page:
        peer_id = await page.start("ice", f"browser-{random_token()}", ice_broker.url)
        config = await page.page.evaluate(DOCUMENTED_LINES, ["ice", ice_broker.url])
        stun, turn = config["iceServers"]
        assert stun == {"urls": f"stun:127.0.0.1:{ice_broker.stun_port}"}
        assert turn["urls"] == ["turn:127.0.0.1:3478"]
        assert turn["username"].endswith(f":{peer_id}")
        digest = hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(digest).decode()
        await page.destroy("ice")
