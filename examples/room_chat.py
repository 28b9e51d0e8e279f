"""A group chat: everyone who runs this with the same room name talks together.

Start the broker (``peerpy-server --port 9000 --host 127.0.0.1``), then in as
many terminals as you like::

    python examples/room_chat.py Alice          # room "lobby"
    python examples/room_chat.py Bob lobby

Each line typed goes to everyone in the room, peer to peer (the broker only
keeps the member list); joins and leaves show as ``*`` lines.  Ctrl-D leaves.
"""

import sys

from peerpy.sync import Peer

name, room_name = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "lobby")

with Peer() as peer, peer.join(room_name, metadata={"name": name}) as room:
    names = {member: meta["name"] for member, meta in room.members.items()}
    print(f"* in {room_name} with {', '.join(names.values()) or 'nobody yet'}", flush=True)

    def joined(member, metadata):
        names[member] = metadata["name"]
        print(f"* {names[member]} joined", flush=True)

    room.on("join", joined)
    room.on("leave", lambda member: print(f"* {names.pop(member, member)} left", flush=True))
    room.on("data", lambda member, line: print(f"{names.get(member, member)}: {line}", flush=True))
    for line in sys.stdin:
        room.send(line.rstrip("\n"))
