"""The broker's sans-I/O core (peerpy_server.core) and pure helpers, with fakes."""
