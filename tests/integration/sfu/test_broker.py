"""The broker drives a real Janus: rooms created with the first member, credentials minted per
member and revoked on leave, the room destroyed when it empties, moved when Janus dies."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from peerpy_protocol.janus import SUBPROTOCOL, VIDEOROOM
from peerpy_protocol.rooms import OPEN_WITH_ROOMS
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from ...helpers.janus_support import ADMIN_KEY, JanusServer
from ...helpers.signaling import Client, client
from ...helpers.targets import Target, run_ours

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def member(target: Target, peer_id: str) -> AsyncIterator[Client]:
    async with client(target.ws_url(id=peer_id, token="tok") + "&ext=rooms") as c:
        assert await c.recv_raw() == OPEN_WITH_ROOMS
        yield c


async def join(c: Client, room: str) -> dict[str, Any]:
    await c.send({"type": "ROOM-JOIN", "payload": {"room": room, "metadata": None}})
    return await c.recv()


class RawJanus:
    """A hand-driven Janus client: one session, one VideoRoom handle."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.n = 0
        self.session = self.handle = 0

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        tid = f"x{self.n}"
        await self.ws.send(json.dumps({**message, "transaction": tid}))
        while True:
            with anyio.fail_after(5):
                answer: dict[str, Any] = json.loads(await self.ws.recv())
            if answer.get("transaction") == tid and answer["janus"] != "ack":
                return answer

    async def videoroom(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.call(
            {"janus": "message", "session_id": self.session, "handle_id": self.handle,
             "body": body}
        )  # fmt: skip
        data: dict[str, Any] = answer.get("plugindata", {}).get("data", {})
        return data


@contextlib.asynccontextmanager
async def raw_janus(url: str) -> AsyncIterator[RawJanus]:
    async with connect(url, subprotocols=[Subprotocol(SUBPROTOCOL)]) as ws:
        raw = RawJanus(ws)
        raw.session = (await raw.call({"janus": "create"}))["data"]["id"]
        attached = await raw.call(
            {"janus": "attach", "plugin": VIDEOROOM, "session_id": raw.session}
        )
        raw.handle = attached["data"]["id"]
        yield raw


async def test_members_get_minted_credentials_that_janus_checks(janus: JanusServer) -> None:
    """ROOM-MEMBERS carries the SFU room; Janus admits a member with its own token and PIN only,
    not with a wrong PIN, a made-up token, or the token of a member who left; the room is
    destroyed once empty; nobody can create rooms without the admin key."""
    options = {"janus_urls": [janus.url], "janus_admin_key": ADMIN_KEY}
    async with run_ours(**options) as target, member(target, "alice") as alice:
        answer = await join(alice, "lobby")
        sfu = answer["payload"]["sfu"]
        assert answer["payload"]["members"] == {}
        assert sfu["url"] == janus.url
        assert isinstance(sfu["room"], int)
        async with member(target, "bob") as bob:
            bob_sfu = (await join(bob, "lobby"))["payload"]["sfu"]
            assert bob_sfu["room"] == sfu["room"]
            assert bob_sfu["pin"] == sfu["pin"]
            assert bob_sfu["token"] != sfu["token"]
            assert (await alice.recv())["type"] == "ROOM-JOIN"
            async with raw_janus(janus.url) as raw:
                base = {"request": "join", "ptype": "publisher", "room": sfu["room"]}
                refused = await raw.videoroom({**base, "pin": "0000", "token": sfu["token"]})
                assert refused["error_code"] == 433  # unauthorized (PIN)
                forged = await raw.videoroom({**base, "pin": sfu["pin"], "token": "made-up"})
                assert forged["error_code"] == 433  # unauthorized (token)
                creating = await raw.videoroom({"request": "create", "room": 77})
                assert creating["error_code"] == 429  # the admin key is missing
                # bob leaves: his token stops working.
                await bob.send({"type": "ROOM-LEAVE", "payload": {"room": "lobby"}})
                assert (await alice.recv())["type"] == "ROOM-LEAVE"
                with anyio.fail_after(5):
                    while True:
                        late = await raw.videoroom({**base, "pin": sfu["pin"], "token": bob_sfu["token"]})  # fmt: skip # noqa: E501
                        if late.get("error_code") == 433:
                            break
                        await anyio.sleep(0.05)
                joined = await raw.videoroom(
                    {**base, "pin": sfu["pin"], "token": sfu["token"], "display": "alice"}
                )
                assert joined.get("videoroom") == "joined", joined
        # alice leaves: the room is empty and destroyed on Janus.
        await alice.send({"type": "ROOM-LEAVE", "payload": {"room": "lobby"}})
        async with raw_janus(janus.url) as raw:
            with anyio.fail_after(5):
                while (await raw.videoroom({"request": "exists", "room": sfu["room"]}))["exists"]:  # noqa: ASYNC110 - polling Janus, no event
                    await anyio.sleep(0.05)


async def participants(raw: RawJanus, room: int) -> dict[int, str]:
    listed = await raw.videoroom({"request": "listparticipants", "room": room})
    return {p["id"]: p.get("display") for p in listed["participants"]}


async def test_a_member_showing_itself_as_another_is_kicked(janus: JanusServer) -> None:
    """Janus takes any display name with a valid token: a member joining as another member (with
    its own token and a made-up id, or its own id) is kicked by the broker within about a
    second; members joining with the id the broker gave them stay."""
    options = {"janus_urls": [janus.url], "janus_admin_key": ADMIN_KEY}
    async with (
        run_ours(**options) as target,
        member(target, "alice") as alice,
        member(target, "bob") as bob,
    ):
        alice_sfu = (await join(alice, "hall"))["payload"]["sfu"]
        bob_sfu = (await join(bob, "hall"))["payload"]["sfu"]
        assert alice_sfu["id"] != bob_sfu["id"]
        room = alice_sfu["room"]

        def joining(sfu: dict[str, Any], display: str, id_: int) -> dict[str, Any]:
            return {"request": "join", "ptype": "publisher", "room": room, "pin": sfu["pin"],
                    "token": sfu["token"], "display": display, "id": id_}  # fmt: skip

        async with (
            raw_janus(janus.url) as honest_alice,
            raw_janus(janus.url) as honest_bob,
            raw_janus(janus.url) as impostor,
            raw_janus(janus.url) as impostor_with_own_id,
            raw_janus(janus.url) as observer,
        ):
            for raw, body in (
                (honest_alice, joining(alice_sfu, "alice", alice_sfu["id"])),
                (honest_bob, joining(bob_sfu, "bob", bob_sfu["id"])),
                (impostor, joining(bob_sfu, "alice", 4242)),
                (impostor_with_own_id, joining(bob_sfu, "alice", bob_sfu["id"] + 1)),
            ):
                assert (await raw.videoroom(body)).get("videoroom") == "joined"
            with anyio.fail_after(5):
                while len(await participants(observer, room)) > 2:  # noqa: ASYNC110 - polling Janus
                    await anyio.sleep(0.1)
            assert await participants(observer, room) == {
                alice_sfu["id"]: "alice",
                bob_sfu["id"]: "bob",
            }
            await anyio.sleep(1.5)  # another check or two: the honest ones stay
            assert len(await participants(observer, room)) == 2
