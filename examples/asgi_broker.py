"""The PeerJS broker mounted in a Starlette app, as ExpressPeerServer is in Express.

python examples/asgi_broker.py              # http://127.0.0.1:8000/
python examples/asgi_broker.py --port 9000

The host app serves its own page at ``/`` and mounts the broker at ``/signal``:
PeerJS connects with ``new Peer({host, port, path: "/signal"})``, peerpy with
``Peer(server="http://127.0.0.1:8000/signal/")``.  With FastAPI it is the same
two lines: ``app = FastAPI(lifespan=broker.lifespan)`` and
``app.mount("/signal", broker)``.  It listens on loopback only unless you pass
``--host``.
"""

import argparse

import uvicorn
from peerpy_server import BrokerConfig
from peerpy_server.asgi import BrokerApp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

# The broker: everything peerpy-server serves, under the mount path.
broker = BrokerApp(BrokerConfig(allow_discovery=True))

PAGE = """<!doctype html>
<title>peerpy broker in Starlette</title>
<p>The PeerJS broker is mounted at <code>/signal</code>
(<a href="/signal/">banner</a>, <a href="/signal/health">health</a>,
<a href="/signal/peerjs/peers">peers</a>).</p>
<pre>new Peer({host: location.hostname, port: location.port, path: "/signal"})</pre>
"""


async def home(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


# Starlette does not pass lifespan events to mounted apps: the host app's
# lifespan starts and stops the broker (its expiry timers, cluster link...).
app = Starlette(
    routes=[Route("/", home), Mount("/signal", app=broker)],
    lifespan=broker.lifespan,
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # uvicorn pings the WebSockets (the broker's ping_interval) and refuses a
    # message over the broker's max_message_size before buffering it.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_max_size=broker.config.max_message_size,
    )
