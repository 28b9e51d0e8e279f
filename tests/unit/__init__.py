"""Pure tests: no sockets, no event loop, fake clocks (one folder per package)."""
