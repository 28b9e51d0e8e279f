"""Telling a sender why a receiver could not connect (the SDK's ICE diagnosis).

An incoming connection that fails before it opens never reaches
:meth:`peerpy.Peer.accept`: the Peer logs it (with the diagnosis of
:mod:`peerpy.diagnosis`) and drops it.  A sender waiting for its receiver
would say nothing while the receiver fails with the diagnosis; the sender's
Peer therefore logs through :func:`watching_logger`, which hands each
negotiation failure to the transfer's ``on_notice`` and passes every record
on to the ``peerpy.peer`` logger as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..exceptions import NegotiationFailedError

__all__ = ["watching_logger"]


class _Failures(logging.Handler):
    def __init__(self, notice: Callable[[str], Any], parent: logging.Logger) -> None:
        super().__init__()
        self._notice = notice
        self._parent = parent

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, NegotiationFailedError):
                # "Negotiation of connection to <id> failed. <diagnosis>": the diagnosis.
                first, sep, diagnosis = str(arg).partition(". ")
                self._notice(f"a receiver could not connect: {diagnosis if sep else first}")
        if self._parent.isEnabledFor(record.levelno):
            self._parent.handle(record)


def watching_logger(notice: Callable[[str], Any]) -> logging.Logger:
    """A logger for one sender's Peer: negotiation failures also go to ``notice``.

    Not registered with :mod:`logging` (one per transfer, gone with it); its
    records reach the ``peerpy.peer`` logger's handlers when that logger is
    enabled for their level.
    """
    parent = logging.getLogger("peerpy.peer")
    logger = logging.Logger(parent.name, min(logging.INFO, parent.getEffectiveLevel()))
    logger.propagate = False
    logger.addHandler(_Failures(notice, parent))
    return logger
