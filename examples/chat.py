"""A chat between two terminals, in three lines of peerpy.

Start the broker (``peerpy-server --port 9000 --host 127.0.0.1``), then::

    python examples/chat.py alice            # waits for someone
    python examples/chat.py bob alice        # connects to alice

Type lines; they appear on the other side, in order (``reliable=True``: PeerJS's
default channel is unordered).  Ctrl-D ends the chat.
"""

import sys

from peerpy.sync import Peer

me, them = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)

with Peer(me) as peer, peer.connect(them, reliable=True) if them else peer.accept() as conn:
    conn.on("data", lambda line: print(f"{conn.peer}: {line}", flush=True))
    for line in sys.stdin: conn.send(line.rstrip("\n"))  # noqa: E701  # fmt: skip
