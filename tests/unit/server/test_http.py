"""The HTTP API (peerpy_server.transports.http) against a fake view: no socket, no event loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from peerpy_server.config import BrokerConfig
from peerpy_server.core.ice_access import IceRequest
from peerpy_server.transports.http import INFO, respond
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


class FakeView:
    """An HttpView whose ``/peers`` answer waits until the test releases it."""

    def __init__(self, **options: Any) -> None:
        self.config = BrokerConfig(port=0, **options)
        self.ids = ["alice", "bob"]
        self.later: list[Callable[[list[str]], None]] = []
        self.deferred = False
        self.asked: list[IceRequest] = []

    def is_taken(self, peer_id: str) -> bool:
        return peer_id in self.ids

    def peers(self, answer: Callable[[list[str]], None]) -> None:
        if self.deferred:
            self.later.append(answer)
        else:
            answer(self.ids)

    def ice_servers(
        self, request: IceRequest, answer: Callable[[int, list[dict[str, Any]] | None], None]
    ) -> None:
        self.asked.append(request)
        if (request.peer_id, request.token) == ("alice", "t"):
            answer(200, [{"urls": f"stun:{request.host}"}])
        else:
            answer(401, None)

    def health(self) -> tuple[int, dict[str, Any]]:
        return 503, {"status": "full"}

    def metrics(self) -> bytes:
        return b"peerpy_broker_clients 2\n"


def ask(view: FakeView, path: str, method: str | None = None) -> list[Response]:
    replies: list[Response] = []
    request = Request(path, Headers({"Host": "broker.example", "Origin": "https://app"}))
    respond(request, view, replies.append, ip="192.0.2.7", method=method)
    return replies


def test_routes_answer_at_once() -> None:
    """Banner, health, metrics, a fresh id and ICE servers are answered before respond returns."""
    view = FakeView()
    [banner] = ask(view, "/")
    assert (banner.status_code, banner.body) == (200, INFO)
    assert banner.headers["Access-Control-Allow-Origin"] == "https://app"
    [health] = ask(view, "/health")
    assert (health.status_code, json.loads(health.body)) == (503, {"status": "full"})
    [metrics] = ask(view, "/metrics")
    assert metrics.body == b"peerpy_broker_clients 2\n"
    [fresh] = ask(view, "/peerjs/id")
    assert fresh.status_code == 200
    assert fresh.body.decode() not in view.ids
    [ice] = ask(view, "/peerjs/ice?id=alice&token=t")
    assert json.loads(ice.body) == [{"urls": "stun:broker.example"}]
    [wrong] = ask(view, "/peerjs/ice?id=alice&token=x")
    assert (wrong.status_code, wrong.body) == (401, b"Unauthorized")
    assert ask(view, "/otherkey/ice?id=alice&token=t")[0].status_code == 200  # the view's job
    assert view.asked[-1] == IceRequest(
        key="otherkey", peer_id="alice", token="t", host="broker.example", ip="192.0.2.7"
    )


def test_peers_needs_discovery() -> None:
    """``/peers`` without ``allow_discovery`` is 401 and never asks the view."""
    view = FakeView()
    view.deferred = True
    [reply] = ask(view, "/peerjs/peers")
    assert reply.status_code == 401
    assert view.later == []


def test_peers_answers_when_the_view_lists_them() -> None:
    """``/peers`` replies once the view called back (cluster mode), not before."""
    view = FakeView(allow_discovery=True)
    view.deferred = True
    replies: list[Response] = []
    respond(Request("/peerjs/peers", Headers()), view, replies.append, ip="192.0.2.7")
    assert replies == []
    [answer] = view.later
    answer(["alice", "bob", "carol"])
    [reply] = replies
    assert (reply.status_code, json.loads(reply.body)) == (200, ["alice", "bob", "carol"])


def test_head_keeps_the_get_headers_without_body() -> None:
    """HEAD answers like GET, Content-Length included, with an empty body."""
    view = FakeView(allow_discovery=True)
    [get] = ask(view, "/peerjs/peers")
    [head] = ask(view, "/peerjs/peers", method="HEAD")
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == str(len(get.body))


def test_outside_the_path_and_other_methods_are_404() -> None:
    """Paths outside ``config.path`` and methods other than GET/HEAD/OPTIONS get 404."""
    view = FakeView(path="/myapp")
    [outside] = ask(view, "/other")
    assert outside.status_code == 404
    assert "Access-Control-Allow-Origin" not in outside.headers
    [post] = ask(view, "/myapp/peerjs/id", method="POST")
    assert (post.status_code, post.body) == (404, b"Cannot POST /myapp/peerjs/id")
    [preflight] = ask(view, "/myapp/peerjs/id", method="OPTIONS")
    assert preflight.status_code == 204


def test_the_rooms_module_is_served_to_pages() -> None:
    """GET {path}peerpy-rooms.js answers the browser module, as JavaScript, with CORS; the SFU
    part it imports is beside it."""
    view = FakeView(path="/myapp")
    [module] = ask(view, "/myapp/peerpy-rooms.js")
    assert module.status_code == 200
    assert module.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert module.headers["Access-Control-Allow-Origin"] == "https://app"
    assert b"export function joinRoom" in module.body
    [outside] = ask(view, "/peerpy-rooms.js")
    assert outside.status_code == 404
    [sfu] = ask(view, "/myapp/peerpy-rooms-sfu.js")  # imported by the rooms module
    assert sfu.status_code == 200
    assert sfu.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert b"export class SfuMedia" in sfu.body
    assert b'from "./peerpy-rooms-sfu.js"' in module.body
