"""Pure tests of the broker: its sans-I/O core (peerpy_server.core) and pure helpers, with fakes."""
