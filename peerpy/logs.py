"""PeerJS's ``debug`` option: how much the ``peerpy`` loggers say.

PeerJS's ``new Peer(id, {debug: 2})`` sets the level of its one logger, for
every peer of the page.  ``Peer(debug=...)`` does the same to the ``peerpy``
logger (the parent of ``peerpy.peer``, ``peerpy.signaling``...), for every
peer of the process:

=====  ==========================  =============================
debug  PeerJS prints               level of the ``peerpy`` logger
=====  ==========================  =============================
0      nothing                     above ``CRITICAL``: nothing
1      errors                      ``ERROR``
2      warnings and errors         ``WARNING``
3      everything                  ``DEBUG``
=====  ==========================  =============================

Like PeerJS, which prints to the console, a ``debug`` of 1 to 3 also shows
the records on stderr when nothing else would: if neither the ``peerpy``
logger nor the root logger has a handler, one stderr handler is added to
``peerpy``.  ``debug=None`` (the default) leaves logging as the application
configured it.  Pure code: no I/O library.
"""

from __future__ import annotations

import logging

from .exceptions import ConfigurationError

__all__ = ["DEBUG_LEVELS", "set_debug"]

#: ``debug`` value -> level of the ``peerpy`` logger.
DEBUG_LEVELS = {0: logging.CRITICAL + 10, 1: logging.ERROR, 2: logging.WARNING, 3: logging.DEBUG}

_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def set_debug(debug: int | None) -> None:
    """Apply PeerJS's ``debug`` level (0-3) to the ``peerpy`` logger; ``None`` does nothing.

    Raise :class:`~peerpy.exceptions.ConfigurationError` for another value.
    """
    if debug is None:
        return
    if type(debug) is not int or debug not in DEBUG_LEVELS:
        raise ConfigurationError(f"debug must be 0, 1, 2 or 3 (as in PeerJS), not {debug!r}")
    logger = logging.getLogger("peerpy")
    logger.setLevel(DEBUG_LEVELS[debug])
    if debug and not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
