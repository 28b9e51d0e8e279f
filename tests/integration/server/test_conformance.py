"""Differential conformance: one scenario suite run against our broker and ``peer`` 1.0.2.

Each test scripts spec §1.11-style transcripts with a raw WebSocket client
and asserts the same wire behaviour from both brokers.  Where we improve on
``peer`` on purpose (OPEN on same-token takeover, tolerance of bad JSON), the
test asserts each broker's behaviour explicitly.
"""

from __future__ import annotations

import importlib.metadata
import json
import re

import pytest
from peerpy_server.transports.http import INFO
from websockets.exceptions import InvalidStatus

from ...helpers.http import http_request
from ...helpers.signaling import client, peer_client
from ...helpers.targets import StartBroker

pytestmark = pytest.mark.anyio

NO_PARAMS = {
    "type": "ERROR",
    "payload": {"msg": "No id, token, or key supplied to websocket server"},
}
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
#: websockets 16 (the newest on Python 3.10) parses GET requests only.
WEBSOCKETS_PARSES_ANY_METHOD = int(importlib.metadata.version("websockets").split(".")[0]) >= 17
SDP = {"sdp": {"type": "offer", "sdp": "v=0\r\n"}, "type": "data", "connectionId": "dc_x"}
CAND = {
    "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"},
    "connectionId": "dc_x",
}


async def test_info_banner(start_broker: StartBroker) -> None:
    """GET {path} answers peer's JSON banner byte for byte.

    Mounted in Starlette, GET {path} is redirected to {path}/ (the host app's
    rule for mounts), which answers the banner.
    """
    async with start_broker() as target:
        path = "/myapp"
        if target.is_asgi:
            status, headers, _ = await http_request(target.port, "GET", path)
            assert (status, headers["location"]) == (307, f"http://127.0.0.1:{target.port}/myapp/")
            path = "/myapp/"
        status, headers, body = await http_request(target.port, "GET", path)
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert body == INFO


async def test_id_endpoint_gives_bare_uuid_for_any_key(start_broker: StartBroker) -> None:
    """GET {path}/{anykey}/id answers a bare UUID v4 as text/html, with no newline."""
    async with start_broker() as target:
        for key in ("peerjs", "whatever"):
            status, headers, body = await http_request(
                target.port, "GET", f"/myapp/{key}/id?ts=1&version=1.5.5"
            )
            assert status == 200
            assert headers["content-type"] == "text/html; charset=utf-8"
            assert UUID4.fullmatch(body.decode())


async def test_peers_endpoint_refused_without_discovery(start_broker: StartBroker) -> None:
    """GET {path}/{key}/peers is 401 Unauthorized unless discovery is on."""
    async with start_broker() as target:
        status, _, body = await http_request(target.port, "GET", "/myapp/peerjs/peers")
        assert (status, body) == (401, b"Unauthorized")


async def test_peers_endpoint_lists_ids_with_discovery(start_broker: StartBroker) -> None:
    """With discovery on, GET {path}/{key}/peers is the JSON list of registered ids."""
    async with start_broker(allow_discovery=True) as target, peer_client(target, "p1"):
        status, headers, body = await http_request(target.port, "GET", "/myapp/x/peers")
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body) == ["p1"]


async def test_cors_reflects_origin_and_answers_preflight(start_broker: StartBroker) -> None:
    """The request Origin is reflected; an OPTIONS preflight gets 204 and the methods."""
    async with start_broker() as target:
        origin = {"Origin": "http://app.example"}
        _, headers, _ = await http_request(target.port, "GET", "/myapp/peerjs/id", origin)
        assert headers["access-control-allow-origin"] == "http://app.example"
        assert "Origin" in headers["vary"]
        if target.name in ("peerpy", "cluster") and not WEBSOCKETS_PARSES_ANY_METHOD:
            pytest.skip("our broker answers OPTIONS only with websockets >= 17 (Python >= 3.11)")
        status, headers, _ = await http_request(
            target.port,
            "OPTIONS",
            "/myapp/peerjs/id",
            {**origin, "Access-Control-Request-Method": "GET"},
        )
        assert status == 204
        assert headers["access-control-allow-origin"] == "http://app.example"
        assert headers["access-control-allow-methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"


async def test_websocket_upgrade_elsewhere_is_400(start_broker: StartBroker) -> None:
    """A WebSocket upgrade on any path but {path}/peerjs gets HTTP 400.

    Mounted in an ASGI app, paths outside the mount are the host app's: 403 (Starlette).
    """
    async with start_broker() as target:
        for path in ("/myapp/other", "/peerjs"):
            url = target.ws_url(id="a", token="t", path=path)
            with pytest.raises(InvalidStatus) as info:
                async with client(url):
                    pass
            outside = target.by_asgi(url) and path == "/peerjs"
            assert info.value.response.status_code == (403 if outside else 400)


@pytest.mark.parametrize("missing", ["id", "token", "key"])
async def test_missing_parameter_gets_error_and_close(
    start_broker: StartBroker, missing: str
) -> None:
    """A missing or empty id, token or key gets peer's ERROR, then a close with no status."""
    params = {"key": "peerjs", "id": "a", "token": "t"}
    params[missing] = ""
    async with start_broker() as target:
        url = target.ws_url(**params)
        async with client(url) as c:
            assert await c.recv() == NO_PARAMS
            assert await c.closed() == target.no_status(url)


async def test_wrong_key_gets_error(start_broker: StartBroker) -> None:
    """A wrong key gets ERROR "Invalid key provided" and the socket closes."""
    async with start_broker() as target:
        url = target.ws_url(key="bad", id="a", token="t")
        async with client(url) as c:
            assert await c.recv() == {"type": "ERROR", "payload": {"msg": "Invalid key provided"}}
            assert await c.closed() == target.no_status(url)


async def test_custom_key_is_checked(start_broker: StartBroker) -> None:
    """With a configured key, that key opens and the default one does not."""
    async with start_broker(key="s3cret") as target:
        async with client(target.ws_url(key="s3cret", id="a", token="t")) as c:
            assert await c.recv() == {"type": "OPEN"}
        async with client(target.ws_url(key="peerjs", id="b", token="t")) as c:
            assert (await c.recv())["type"] == "ERROR"


async def test_id_taken_with_another_token(start_broker: StartBroker) -> None:
    """A registered id claimed with another token gets ID-TAKEN and a close."""
    async with start_broker() as target, peer_client(target, "alice", "tokA") as alice:
        url = target.ws_url(id="alice", token="other")
        async with client(url) as c:
            assert await c.recv() == {"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}
            assert await c.closed() == target.no_status(url)
        assert await alice.silent(0.2)


async def test_concurrent_limit(start_broker: StartBroker) -> None:
    """Past concurrent_limit, a new id gets ERROR "Server has reached its concurrent user limit"."""
    async with (
        start_broker(concurrent_limit=1) as target,
        peer_client(target, "one"),
        client(target.ws_url(id="two", token="t")) as c,
    ):
        assert await c.recv() == {
            "type": "ERROR",
            "payload": {"msg": "Server has reached its concurrent user limit"},
        }


async def test_queue_flushed_after_open_with_src_rewritten(start_broker: StartBroker) -> None:
    """Messages for an offline id follow its OPEN in order, src forced, extras dropped."""
    async with start_broker() as target, peer_client(target, "alice") as alice:
        await alice.send(
            {"type": "OFFER", "src": "mallory", "dst": "bob", "extra": 1, "payload": SDP}
        )
        await alice.send({"type": "CANDIDATE", "dst": "bob", "payload": CAND})
        await alice.silent(0.2)  # let the broker queue them
        async with client(target.ws_url(id="bob", token="b")) as bob:
            assert await bob.recv_raw() == '{"type":"OPEN"}'
            offer = await bob.recv_raw()
            assert offer == json.dumps(
                {"type": "OFFER", "src": "alice", "dst": "bob", "payload": SDP},
                separators=(",", ":"),
            )
            assert await bob.recv() == {
                "type": "CANDIDATE",
                "src": "alice",
                "dst": "bob",
                "payload": CAND,
            }


async def test_relay_between_online_peers(start_broker: StartBroker) -> None:
    """ANSWER and LEAVE are relayed to an online destination with src forced to the sender."""
    async with (
        start_broker() as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.send({"type": "ANSWER", "src": "eve", "dst": "bob", "payload": {"a": [1]}})
        assert await bob.recv() == {
            "type": "ANSWER",
            "src": "alice",
            "dst": "bob",
            "payload": {"a": [1]},
        }
        await alice.send({"type": "LEAVE", "dst": "bob"})
        assert await bob.recv() == {"type": "LEAVE", "src": "alice", "dst": "bob"}


async def test_message_to_self_comes_back(start_broker: StartBroker) -> None:
    """dst == src is allowed: the sender gets its own message."""
    async with start_broker() as target, peer_client(target, "alice") as alice:
        await alice.send({"type": "CANDIDATE", "dst": "alice", "payload": 7})
        assert await alice.recv() == {
            "type": "CANDIDATE",
            "src": "alice",
            "dst": "alice",
            "payload": 7,
        }


async def test_expire_exactly_once_per_sender(start_broker: StartBroker) -> None:
    """An OFFER and CANDIDATE to an id that never comes give the sender one EXPIRE."""
    async with start_broker(expire_timeout=1.0) as target, peer_client(target, "alice") as alice:
        await alice.send({"type": "OFFER", "dst": "carol", "payload": SDP})
        await alice.send({"type": "CANDIDATE", "dst": "carol", "payload": CAND})
        assert await alice.recv(timeout=4) == {"type": "EXPIRE", "src": "carol", "dst": "alice"}
        assert await alice.silent(1.5)


async def test_leave_and_expire_to_offline_id_are_dropped(start_broker: StartBroker) -> None:
    """LEAVE and EXPIRE to an offline id are dropped: never queued, no EXPIRE back."""
    async with start_broker(expire_timeout=1.0) as target, peer_client(target, "alice") as alice:
        await alice.send({"type": "LEAVE", "dst": "dave"})
        await alice.send({"type": "EXPIRE", "dst": "dave"})
        assert await alice.silent(2.3)
        async with peer_client(target, "dave") as dave:
            assert await dave.silent(0.3)


async def test_leave_without_dst_unregisters_sender(start_broker: StartBroker) -> None:
    """LEAVE with no dst frees the sender's id; messages to it are then queued."""
    async with (
        start_broker() as target,
        peer_client(target, "alice", "tokA") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.send({"type": "LEAVE"})
        await alice.silent(0.2)
        await bob.send({"type": "OFFER", "dst": "alice", "payload": SDP})
        assert await alice.silent(0.3)
        async with client(target.ws_url(id="alice", token="another")) as again:
            assert await again.recv() == {"type": "OPEN"}
            assert (await again.recv())["src"] == "bob"


async def test_unknown_types_and_missing_dst_are_ignored(start_broker: StartBroker) -> None:
    """Unknown types, OPEN from a client and a relay without dst are ignored; the socket stays."""
    async with (
        start_broker() as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.send({"type": "NONSENSE", "dst": "bob"})
        await alice.send({"type": "OPEN", "dst": "bob"})
        await alice.send({"dst": "bob", "payload": 1})
        await alice.send({"type": "OFFER", "payload": 1})
        await alice.send({"type": "HEARTBEAT"})
        await alice.send({"type": "ANSWER", "dst": "bob", "payload": 2})
        assert (await bob.recv())["payload"] == 2
        assert await alice.silent(0.2)


async def test_json_in_binary_frame_is_relayed_as_text(start_broker: StartBroker) -> None:
    """A JSON envelope in a binary frame is relayed like a text one."""
    async with (
        start_broker() as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.send(b'{"type":"ANSWER","dst":"bob","payload":3}')
        assert await bob.recv_raw() == '{"type":"ANSWER","src":"alice","dst":"bob","payload":3}'


async def test_same_token_reconnect(start_broker: StartBroker) -> None:
    """A same-token reconnect takes the id over; only ours sends OPEN and closes the old socket."""
    async with (
        start_broker() as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob", "tokB") as old_bob,
        client(target.ws_url(id="bob", token="tokB")) as new_bob,
    ):
        if target.is_peer:
            assert await new_bob.silent(0.4)  # peer 1.0.2: no OPEN (peerjs#1289)
            assert await old_bob.silent(0.1)  # ...and the old socket stays open
        else:
            assert await new_bob.recv() == {"type": "OPEN"}
            assert await old_bob.closed() == 1000
        await alice.send({"type": "ANSWER", "dst": "bob", "payload": 4})
        assert (await new_bob.recv())["payload"] == 4


async def test_malformed_json_tolerance(start_broker: StartBroker) -> None:
    """After a bad JSON frame ours keeps relaying that client's messages; peer 1.0.2 stops."""
    async with (
        start_broker() as target,
        peer_client(target, "alice") as alice,
        peer_client(target, "bob") as bob,
    ):
        await alice.send("{not json")
        await alice.send({"type": "ANSWER", "dst": "bob", "payload": 5})
        if target.is_peer:
            assert await bob.silent(0.5)
        else:
            assert (await bob.recv())["payload"] == 5
        # Either way the socket stays open and others are unaffected.
        await bob.send({"type": "ANSWER", "dst": "alice", "payload": 6})
        assert (await alice.recv())["payload"] == 6


async def test_alive_timeout_drops_silent_clients(start_broker: StartBroker) -> None:
    """Without HEARTBEAT a client is closed after alive_timeout; one that beats stays."""
    async with (
        start_broker(alive_timeout=1.0) as target,
        peer_client(target, "quiet") as quiet,
        peer_client(target, "beating") as beating,
    ):
        for _ in range(8):
            await beating.send({"type": "HEARTBEAT"})
            await beating.silent(0.25)
        assert quiet.ws.close_code is not None or await quiet.closed(1.0) is not None
        assert await beating.silent(0.05)
        async with client(target.ws_url(id="quiet", token="new")) as again:
            assert await again.recv() == {"type": "OPEN"}
