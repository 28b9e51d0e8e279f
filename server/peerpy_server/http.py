"""The broker's plain HTTP API, as ``peer`` 1.0.2 serves it (spec §1.2).

Pure functions from a parsed request to a :class:`websockets.http11.Response`:

* ``GET {path}``: the JSON banner;
* ``GET {path}/{key}/id``: a fresh unused UUID, bare text (``{key}`` is not checked);
* ``GET {path}/{key}/peers``: the registered ids if discovery is on, else 401;
* ``GET {path}/{key}/ice?id=ID&token=TOKEN``: the ICE servers for that
  registered peer (a peerpy extra, see :mod:`peerpy_server.ice`), else 401;
* ``GET {path}/health``: JSON about the broker (clients, queues, Redis),
  200 when it can serve, 503 when it cannot (peerpy extra, ``docs/broker.md``);
* ``GET {path}/metrics``: Prometheus text (peerpy extra, :mod:`peerpy_server.metrics`);
* ``OPTIONS`` under ``{path}``: a CORS preflight answered with 204;
* anything else: 404.

CORS: the request ``Origin`` is reflected (or only the configured origins).
Every response closes the connection; PeerJS makes one request per fetch.
"""

from __future__ import annotations

import http
import json
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any, Final

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .config import BrokerConfig

__all__ = ["INFO", "bad_request", "request_method", "respond"]

#: ``peer`` 1.0.2's banner, byte for byte.
INFO: Final = (
    b'{"name":"PeerJS Server","description":"A server side element to broker'
    b' connections between PeerJS clients.","website":"https://peerjs.com/"}'
)
_JSON: Final = "application/json; charset=utf-8"
_HTML: Final = "text/html; charset=utf-8"
_TEXT: Final = "text/plain; charset=utf-8"
_PROMETHEUS: Final = "text/plain; version=0.0.4; charset=utf-8"
_METHODS: Final = "GET,HEAD,PUT,PATCH,POST,DELETE"


def request_method(request: Request) -> str:
    """The request's method.

    websockets 17 parses any method; websockets 16 (the newest on Python 3.10)
    has no ``Request.method`` and refuses anything but GET while parsing, so
    there only GET reaches the broker (no HEAD, no CORS preflight).
    """
    method: str = getattr(request, "method", "GET")
    return method


def _response(status: int, body: bytes, content_type: str | None, extra: Headers) -> Response:
    headers = Headers()
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Connection"] = "close"
    headers.update(extra)
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def bad_request() -> Response:
    """400 for a WebSocket upgrade anywhere but ``{path}/peerjs`` (what ``ws`` does)."""
    return _response(400, b"Bad Request", _TEXT, Headers())


def _relative(path: str, mount: str) -> str | None:
    """``path`` relative to the mount point, or ``None`` if it lies outside it."""
    if mount == "/":
        return path
    if path == mount or path.startswith(mount + "/"):
        return path[len(mount) :] or "/"
    return None


def _cors(request: Request, config: BrokerConfig) -> Headers:
    headers = Headers()
    origin = request.headers.get("Origin")
    if origin is not None and (config.cors_origins is None or origin in config.cors_origins):
        headers["Access-Control-Allow-Origin"] = origin
    headers["Vary"] = "Origin"
    return headers


def new_id(is_taken: Callable[[str], bool]) -> str:
    """A random UUID v4 that ``is_taken`` says is unused (like ``peer``'s generator)."""
    while True:
        candidate = str(uuid.uuid4())
        if not is_taken(candidate):
            return candidate


def respond(
    request: Request,
    config: BrokerConfig,
    ids: Callable[[], list[str]],
    is_taken: Callable[[str], bool],
    ice: Callable[[str, str, str | None], list[dict[str, Any]] | None] | None = None,
    health: Callable[[], tuple[int, dict[str, Any]]] | None = None,
    metrics: Callable[[], bytes] | None = None,
    *,
    method: str | None = None,
    mount: str | None = None,
) -> Response:
    """Answer a plain (non-upgrade) HTTP request.

    ``ids`` lists the registered ids (for discovery); ``is_taken`` tells
    whether an id is registered (for ``/id``); ``ice(id, token, host)`` gives
    a registered peer's ICE servers, ``None`` for a wrong id or token (for ``/ice``);
    ``health()`` gives the status code and JSON body of ``/health``;
    ``metrics()`` the Prometheus text of ``/metrics``.  ``method`` overrides
    the request's method and ``mount`` the mount path ``config.path`` (the ASGI
    application passes both: its server parsed the request, and it may be
    mounted under a prefix).
    """
    path = request.path.partition("?")[0]
    if method is None:
        method = request_method(request)
    relative = _relative(path, config.path if mount is None else mount)
    if relative is None:
        return _response(404, f"Cannot {method} {path}".encode(), _HTML, Headers())
    cors = _cors(request, config)
    if method == "OPTIONS":
        cors["Access-Control-Allow-Methods"] = _METHODS
        requested = request.headers.get("Access-Control-Request-Headers")
        if requested is not None:
            cors["Access-Control-Allow-Headers"] = requested
        return _response(204, b"", None, cors)
    if method not in ("GET", "HEAD"):
        return _response(404, f"Cannot {method} {path}".encode(), _HTML, cors)

    parts = relative.strip("/").split("/")
    if parts == [""]:
        response = _response(200, INFO, _JSON, cors)
    elif parts == ["health"] and health is not None:
        status, report = health()
        body = json.dumps(report, separators=(",", ":")).encode()
        response = _response(status, body, _JSON, cors)
    elif parts == ["metrics"] and metrics is not None:
        response = _response(200, metrics(), _PROMETHEUS, cors)
    elif len(parts) == 2 and parts[1] == "id":
        response = _response(200, new_id(is_taken).encode(), _HTML, cors)
    elif len(parts) == 2 and parts[1] == "peers":
        if config.allow_discovery:
            body = json.dumps(ids(), ensure_ascii=False, separators=(",", ":")).encode()
            response = _response(200, body, _JSON, cors)
        else:
            response = _response(401, b"Unauthorized", _TEXT, cors)
    elif len(parts) == 2 and parts[1] == "ice" and ice is not None:
        query = urllib.parse.parse_qs(request.path.partition("?")[2])
        peer_id, token = query.get("id", [""])[0], query.get("token", [""])[0]
        servers = ice(peer_id, token, request.headers.get("Host")) if peer_id else None
        if servers is None:
            response = _response(401, b"Unauthorized", _TEXT, cors)
        else:
            body = json.dumps(servers, ensure_ascii=False, separators=(",", ":")).encode()
            response = _response(200, body, _JSON, cors)
    else:
        response = _response(404, f"Cannot {method} {path}".encode(), _HTML, cors)
    if method == "HEAD":
        response = Response(response.status_code, response.reason_phrase, response.headers, b"")
    return response
