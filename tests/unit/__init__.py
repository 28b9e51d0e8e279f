"""Pure tests: no sockets, no event loop, no real time."""
