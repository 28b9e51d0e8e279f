"""Rooms' parts, bottom-up; the API is :class:`peerpy.room.Room` (``peer.join()``).

=====================  ====================================================
``membership``         who is in a room, from the broker's word (pure)
``mesh``               one data connection per member, opened by one side
``calls``              the room's media, one call per direction per member
``janus``              a session on Janus's WebSocket API (requests, events)
``sfu``                the room's media through Janus: publish once,
                       subscribe to each member's feed
``hub``                a peer's rooms: their broker frames, their incoming
                       connections, joining again after a lost session
``blocking``           the blocking twin of a room, for :mod:`peerpy.sync`
=====================  ====================================================

The wire messages are :mod:`peerpy_protocol.rooms`, shared with the broker.
"""
