"""peerpy's broker: a PeerJS-compatible signaling server (wire-compatible with ``peer`` 1.0.2).

>>> from peerpy_server import Broker, BrokerConfig
>>> async def main() -> None:                                   # doctest: +SKIP
...     async with Broker(BrokerConfig(host="127.0.0.1", port=0)) as broker:
...         print(broker.url)

Layout (imports go downwards only: the transports and the broker use the
core, the core uses nothing of theirs):

* :mod:`~peerpy_server.core`: the sans-I/O core, with no event loop, socket,
  Redis or Prometheus import: :mod:`~peerpy_server.core.realm` (the registry
  and relay rules), :mod:`~peerpy_server.core.session` (one WebSocket,
  either transport), :mod:`~peerpy_server.core.admission` (per-address limits,
  handshake deadline, pings), :mod:`~peerpy_server.core.stats` (counters) and
  :mod:`~peerpy_server.core.host` (the ``Host`` and ``HttpView`` Protocols:
  what the parts may use of the broker);
* :mod:`~peerpy_server.transports`: how bytes arrive:
  :mod:`~peerpy_server.transports.websocket` (the built-in server, one TCP
  connection), :mod:`~peerpy_server.transports.asgi` (one ASGI scope),
  :mod:`~peerpy_server.transports.http` (the HTTP API, for both) and
  :mod:`~peerpy_server.transports.stun` (``--stun``);
* :mod:`~peerpy_server.broker` (listening, timers, shutdown: wires the parts),
  :mod:`~peerpy_server.asgi` (the broker as an ASGI app to mount in
  Starlette/FastAPI), :mod:`~peerpy_server.cluster` (cluster mode on Redis),
  :mod:`~peerpy_server.config` (options), :mod:`~peerpy_server.metrics`
  (``/metrics``), :mod:`~peerpy_server.auth` (JWT tokens),
  :mod:`~peerpy_server.ice` (``/ice``), :mod:`~peerpy_server.logs` and
  :mod:`~peerpy_server.cli` (``peerpy-server``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import BrokerConfig

if TYPE_CHECKING:
    from .broker import Broker, serve

__all__ = ["Broker", "BrokerConfig", "__version__", "serve"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``peerpy_server.core`` (sans-I/O) can be
    # imported without pulling in websockets.
    if name in ("Broker", "serve"):
        from . import broker

        return getattr(broker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
