"""peerpy's broker: a PeerJS-compatible signaling server (wire-compatible with ``peer`` 1.0.2).

>>> from peerpy_server import Broker, BrokerConfig
>>> async def main() -> None:                                   # doctest: +SKIP
...     async with Broker(BrokerConfig(host="127.0.0.1", port=0)) as broker:
...         print(broker.url)

Modules: :mod:`~peerpy_server.config` (options), :mod:`~peerpy_server.realm`
(the sans-I/O registry and relay rules), :mod:`~peerpy_server.http` (the HTTP
API), :mod:`~peerpy_server.connection` (one socket), :mod:`~peerpy_server.broker`
(listening, timers, shutdown), :mod:`~peerpy_server.metrics` (``/metrics``),
:mod:`~peerpy_server.auth` (JWT tokens), :mod:`~peerpy_server.cluster` (cluster
mode on Redis), :mod:`~peerpy_server.session` (one WebSocket, either
transport), :mod:`~peerpy_server.asgi` (the broker as an ASGI app to mount in
Starlette/FastAPI) and :mod:`~peerpy_server.cli` (``peerpy-server``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import BrokerConfig

if TYPE_CHECKING:
    from .broker import Broker, serve

__all__ = ["Broker", "BrokerConfig", "__version__", "serve"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``peerpy_server.realm`` (sans-I/O) can be
    # imported without pulling in websockets.
    if name in ("Broker", "serve"):
        from . import broker

        return getattr(broker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
