"""Rooms with a browser: PeerJS 1.5.5 in Chromium, with peerpy-rooms.js, and Python members.

The page imports the module the broker serves (``<path>peerpy-rooms.js``),
joins the room over its own PeerJS broker socket and meshes with two Python
members.  The ids are chosen so that one Python member opens its connection
to the browser and the browser opens its connection to the other (the smaller
id opens), so both directions of the rule meet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from peerpy_protocol.ids import random_token
from playwright.async_api import BrowserContext

from peerpy.room import Room

from ..helpers.brokers import peerpy_server
from .browser import BrowserPage, StaticServer, open_page, split_broker_url
from .pairs import python_peer

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

#: Page code: start a PeerJS Peer, import the broker's module, join the room and
#: keep what the room tells in ``window.roomTest``.
JOIN = """
async ([brokerUrl, id, room, metadata]) => {
  const { joinRoom } = await import(brokerUrl + "peerpy-rooms.js");
  const [host, port, path] = [new URL(brokerUrl).hostname, Number(new URL(brokerUrl).port),
                              new URL(brokerUrl).pathname];
  const peer = new Peer(id, { host, port, path, key: "peerjs", secure: false,
                              config: { iceServers: [] } });
  await new Promise((resolve, reject) => { peer.on("open", resolve); peer.on("error", reject); });
  const joined = await joinRoom(peer, room, { metadata });
  const test = { peer, room: joined, got: [], events: [] };
  joined.on("data", (member, data) => test.got.push([member, data]));
  joined.on("join", (member, meta) => test.events.push(["join", member, meta]));
  joined.on("leave", (member) => test.events.push(["leave", member]));
  window.roomTest = test;
  return Object.fromEntries(joined.members);
}
"""


@pytest.fixture(scope="module")
async def broker() -> AsyncIterator[str]:
    async with peerpy_server(expire_timeout=1.0) as url:
        yield url


@pytest.fixture
async def page(chromium: BrowserContext, static_server: StaticServer) -> AsyncIterator[BrowserPage]:
    async with open_page(chromium, static_server.origin) as page:
        page.page.on("console", lambda message: print(f"[browser] {message.text}"))
        yield page


async def browser_state(page: BrowserPage) -> dict[str, Any]:
    return dict(
        await page.page.evaluate(
            "() => ({ members: Object.fromEntries(window.roomTest.room.members),"
            " got: window.roomTest.got, events: window.roomTest.events })"
        )
    )


async def until_browser(page: BrowserPage, check: Any, limit: float = 20) -> dict[str, Any]:
    """Poll the page's room state until ``check(state)`` holds; return that state."""
    with anyio.fail_after(limit):
        while not check(state := await browser_state(page)):  # noqa: ASYNC110 - the page changes
            await anyio.sleep(0.05)
    return state


async def test_a_browser_and_two_python_members_broadcast_both_ways(
    broker: str, page: BrowserPage
) -> None:
    """The page and two Python members share a room: members, broadcasts both ways, leave."""
    token = random_token()
    low, browser_id, high = f"a{token}", f"b{token}", f"c{token}"  # a < b < c
    assert split_broker_url(broker)  # an http URL the page can import from
    async with python_peer(low, broker) as alice, python_peer(high, broker) as carol:
        async with alice.join("mixed", metadata={"name": "Alice"}) as ra:
            members = await page.page.evaluate(
                JOIN, [broker, browser_id, "mixed", {"name": "Browser"}]
            )
            assert members == {low: {"name": "Alice"}}
            async with carol.join("mixed", metadata={"name": "Carol"}) as rc:
                assert dict(rc.members) == {low: {"name": "Alice"}, browser_id: {"name": "Browser"}}
                await until_browser(page, lambda s: high in s["members"])
                # The browser broadcasts: both Python members get it from the browser's id.
                await page.page.evaluate("() => window.roomTest.room.send('hello from the page')")
                with anyio.fail_after(20):
                    assert await ra.recv() == (browser_id, "hello from the page")
                    assert await rc.recv() == (browser_id, "hello from the page")
                # Each Python member broadcasts: the browser (and the other) get it, in order.
                for n in range(5):
                    await ra.send({"n": n, "from": "alice"})
                await rc.send("hi from carol")
                state = await until_browser(page, lambda s: len(s["got"]) == 6)
                assert [g for g in state["got"] if g[0] == low] == [
                    [low, {"n": n, "from": "alice"}] for n in range(5)
                ]
                assert [low, {"n": 0, "from": "alice"}] in state["got"]
                assert [high, "hi from carol"] in state["got"]
                with anyio.fail_after(10):
                    assert [await rc.recv() for _ in range(5)] == [
                        (low, {"n": n, "from": "alice"}) for n in range(5)
                    ]
                    assert await ra.recv() == (high, "hi from carol")
                # One connection per pair, opened by the smaller id, both ways.
                assert one_connection(ra, browser_id, originator=True)
                assert one_connection(rc, browser_id, originator=False)
            state = await until_browser(page, lambda s: high not in s["members"])
            assert ["leave", high] in state["events"]
            # The browser leaves: Python sees it go.
            await page.page.evaluate("() => window.roomTest.room.leave()")
            with anyio.fail_after(10):
                while browser_id in ra.members:  # noqa: ASYNC110 - changed by the broker's notice
                    await anyio.sleep(0.05)
        await page.page.evaluate("() => window.roomTest.peer.destroy()")


def one_connection(room: Room, member: str, *, originator: bool) -> bool:
    conn = room.connections.get(member)
    return conn is not None and conn.originator is originator and conn.reliable


async def test_the_module_on_a_broker_without_rooms(
    node_broker_url: str, page: BrowserPage
) -> None:
    """On PeerJS's peer 1.0.2 (which has no rooms) joinRoom rejects with a clear error."""
    async with peerpy_server() as ours:  # the module comes from our broker
        error = await page.page.evaluate(
            """
            async ([moduleUrl, brokerUrl, id]) => {
              const { joinRoom } = await import(moduleUrl + "peerpy-rooms.js");
              const url = new URL(brokerUrl);
              const peer = new Peer(id, { host: url.hostname, port: Number(url.port),
                                          path: url.pathname, config: { iceServers: [] } });
              await new Promise((resolve) => peer.on("open", resolve));
              try {
                await joinRoom(peer, "lobby", { timeout: 1000 });
                return null;
              } catch (err) {
                return { type: err.type, message: err.message };
              } finally {
                peer.destroy();
              }
            }
            """,
            [ours, node_broker_url, "b" + random_token()],
        )
    assert error is not None
    assert error["type"] == "rooms-unsupported"
    assert "this broker has no rooms" in error["message"]
