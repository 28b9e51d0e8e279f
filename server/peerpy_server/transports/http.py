"""The broker's plain HTTP API, as ``peer`` 1.0.2 serves it (spec §1.2).

Pure functions from a parsed request to a :class:`websockets.http11.Response`,
reading the broker through its :class:`~peerpy_server.core.host.HttpView`;
both transports (the built-in server and the ASGI app) answer with
:func:`respond`:

* ``GET {path}``: the JSON banner;
* ``GET {path}/{key}/id``: a fresh unused UUID, bare text (``{key}`` is not checked);
* ``GET {path}/{key}/peers``: the registered ids if discovery is on, else 401;
* ``GET {path}/{key}/rooms/{name}``: the member ids of room ``name``
  (URL-encoded) if discovery is on, else 401 (peerpy extra, ``docs/rooms.md``);
* ``GET {path}/{key}/ice?id=ID&token=TOKEN``: the ICE servers for that
  registered peer (a peerpy extra, see :mod:`peerpy_server.ice`), else 401
  (wrong key, unknown id or token), 429 (too many refusals from this address)
  or 503 (the cluster store cannot say); see :mod:`peerpy_server.core.ice_access`;
* ``GET {path}/peerpy-rooms.js``: the rooms module for PeerJS pages (``docs/interop.md``),
  and ``{path}/peerpy-rooms-sfu.js``, its part for rooms whose media goes through Janus;
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
import importlib.resources
import json
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any, Final

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..config import BrokerConfig
from ..core.host import HttpView
from ..core.ice_access import IceRequest

__all__ = ["INFO", "bad_request", "request_method", "respond"]

#: ``peer`` 1.0.2's banner, byte for byte.
INFO: Final = (
    b'{"name":"PeerJS Server","description":"A server side element to broker'
    b' connections between PeerJS clients.","website":"https://peerjs.com/"}'
)
_JSON: Final = "application/json; charset=utf-8"
_JS: Final = "text/javascript; charset=utf-8"
#: The browser modules in ``static/``, each served at ``{path}NAME``: the rooms module and
#: its SFU part (which the rooms module imports).
MODULES: Final = {
    name: (importlib.resources.files("peerpy_server") / "static" / name).read_bytes()
    for name in ("peerpy-rooms.js", "peerpy-rooms-sfu.js")
}
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
    view: HttpView,
    reply: Callable[[Response], None],
    *,
    ip: str,
    method: str | None = None,
    mount: str | None = None,
) -> None:
    """Answer a plain (non-upgrade) HTTP request: ``reply(response)``, once.

    ``reply`` is called before this returns, except for ``/peers`` and
    ``/ice`` in cluster mode, which wait for Redis (:meth:`HttpView.peers`,
    :meth:`HttpView.ice_servers`).  ``ip`` is the client's address (``/ice``
    limits refusals per address).  ``method`` overrides the request's method
    and ``mount`` the mount path ``config.path`` (the ASGI application passes
    both: its server parsed the request, and it may be mounted under a prefix).
    """
    config = view.config
    path = request.path.partition("?")[0]
    if method is None:
        method = request_method(request)
    relative = _relative(path, config.path if mount is None else mount)
    if relative is None:
        reply(_response(404, f"Cannot {method} {path}".encode(), _HTML, Headers()))
        return
    cors = _cors(request, config)
    if method == "OPTIONS":
        cors["Access-Control-Allow-Methods"] = _METHODS
        requested = request.headers.get("Access-Control-Request-Headers")
        if requested is not None:
            cors["Access-Control-Allow-Headers"] = requested
        reply(_response(204, b"", None, cors))
        return
    if method not in ("GET", "HEAD"):
        reply(_response(404, f"Cannot {method} {path}".encode(), _HTML, cors))
        return

    def answer(status: int, body: bytes, content_type: str) -> None:
        response = _response(status, body, content_type, cors)
        if method == "HEAD":  # the headers of the GET (Content-Length too), no body
            response = Response(status, response.reason_phrase, response.headers, b"")
        reply(response)

    parts = relative.strip("/").split("/")
    if parts == [""]:
        answer(200, INFO, _JSON)
    elif parts == ["health"]:
        status, report = view.health()
        answer(status, json.dumps(report, separators=(",", ":")).encode(), _JSON)
    elif len(parts) == 1 and parts[0] in MODULES:
        answer(200, MODULES[parts[0]], _JS)
    elif parts == ["metrics"]:
        answer(200, view.metrics(), _PROMETHEUS)
    elif len(parts) == 2 and parts[1] == "id":
        answer(200, new_id(view.is_taken).encode(), _HTML)
    elif len(parts) == 2 and parts[1] == "peers":
        if config.allow_discovery:
            view.peers(lambda ids: answer(200, _json(ids), _JSON))
        else:
            answer(401, b"Unauthorized", _TEXT)
    elif len(parts) == 3 and parts[1] == "rooms":
        if config.allow_discovery:
            room = urllib.parse.unquote(parts[2])
            view.room_members(room, lambda ids: answer(200, _json(ids), _JSON))
        else:
            answer(401, b"Unauthorized", _TEXT)
    elif len(parts) == 2 and parts[1] == "ice":
        query = urllib.parse.parse_qs(request.path.partition("?")[2])
        ask = IceRequest(
            key=parts[0],
            peer_id=query.get("id", [""])[0],
            token=query.get("token", [""])[0],
            host=request.headers.get("Host"),
            ip=ip,
        )

        def granted(status: int, servers: list[dict[str, Any]] | None) -> None:
            if servers is None:
                answer(status, http.HTTPStatus(status).phrase.encode(), _TEXT)
            else:
                answer(200, _json(servers), _JSON)

        view.ice_servers(ask, granted)
    else:
        answer(404, f"Cannot {method} {path}".encode(), _HTML)


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
