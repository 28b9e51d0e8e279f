"""Two peers and a broker on a machine whose only interface is loopback.

Run in a fresh network namespace (``unshare -n``); ICE gets no addresses and no
servers from the environment, as on an offline laptop.  Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import time

import anyio
from peerpy_server import Broker, BrokerConfig

from peerpy import Peer


async def exchange(url: str) -> dict[str, object]:
    async with Peer("alice", server=url) as alice, Peer("bob", server=url) as bob:
        started = time.monotonic()
        with anyio.fail_after(20):
            conn = await alice.connect("bob")
            incoming = await bob.accept()
            await conn.send("ping")
            received = await incoming.recv()
        route = conn.route
        return {
            "received": received,
            "seconds": round(time.monotonic() - started, 2),
            "route": str(route),
            "local_type": route.local_type if route else None,
        }


async def main() -> dict[str, object]:
    for name in ("PEERPY_ICE_ADDRESSES", "PEERPY_ICE_SERVERS", "PEERPY_SERVER"):
        os.environ.pop(name, None)
    async with Broker(BrokerConfig(host="127.0.0.1", port=0)) as broker:
        return await exchange(broker.url)


if __name__ == "__main__":
    print(json.dumps(anyio.run(main)), flush=True)
