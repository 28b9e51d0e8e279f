"""The real PeerJS 1.5.5 in Chromium on a broker that requires JWTs (``--jwt-secret``).

The page passes the JWT as PeerJS's ``token`` option and nothing else; a good
token opens, a bad one makes PeerJS report the broker's ERROR; a Python peer
with its own token registers beside it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from peerpy_protocol.ids import random_token
from peerpy_server import Broker, BrokerConfig
from playwright.async_api import BrowserContext

from peerpy.peer import Peer

from .browser import StaticServer, open_page, split_broker_url

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

SECRET = "interop-secret-of-at-least-32-bytes"

REGISTER = """
([id, host, port, path, token]) => new Promise((resolve) => {
  const peer = new Peer(id, {host, port, path, token, secure: false, config: {iceServers: []}});
  const timer = setTimeout(() => resolve({timeout: true}), 10000);
  peer.on("open", (opened) => {
    clearTimeout(timer); window.jwtPeer = peer; resolve({open: opened});
  });
  peer.on("error", (err) => {
    clearTimeout(timer); peer.destroy(); resolve({error: err.type, message: err.message});
  });
})
"""


@pytest.fixture(scope="module")
async def jwt_broker() -> AsyncIterator[Broker]:
    config = BrokerConfig(host="127.0.0.1", port=0, path="/myapp", jwt_secret=SECRET)
    async with Broker(config) as broker:
        yield broker


def token(sub: str, **claims: Any) -> str:
    return jwt.encode({"sub": sub, **claims}, SECRET, algorithm="HS256")


async def test_peerjs_registers_with_a_jwt_and_reports_bad_ones(
    chromium: BrowserContext, static_server: StaticServer, jwt_broker: Broker
) -> None:
    host, port, path = split_broker_url(jwt_broker.url)
    browser_id = f"browser-{random_token()}"
    async with open_page(chromium, static_server.origin) as page:

        async def register(peer_id: str, jwt_token: str) -> dict[str, Any]:
            result: dict[str, Any] = await page.page.evaluate(
                REGISTER, [peer_id, host, port, path, jwt_token]
            )
            return result

        expired = token(browser_id, exp=int(time.time()) - 10)
        assert await register(browser_id, expired) == {
            "error": "server-error", "message": "Invalid token: expired",
        }  # fmt: skip
        wrong = await register(browser_id, token("someone-else"))
        assert wrong == {
            "error": "server-error", "message": "Invalid token: its sub claim is not this id",
        }  # fmt: skip
        good = token(browser_id, exp=int(time.time()) + 600)
        assert await register(browser_id, good) == {"open": browser_id}
        # A Python peer registers beside it with its own token.
        python_id = f"python-{random_token()}"
        async with Peer(python_id, server=jwt_broker.url, token=token(python_id)) as peer:
            assert peer.open
            assert browser_id in jwt_broker.realm
        await page.page.evaluate("() => window.jwtPeer.destroy()")
