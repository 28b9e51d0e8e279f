"""Cluster mode: brokers sharing one realm through Redis (see :mod:`.instance`)."""

from __future__ import annotations

from .instance import CLAIM, ROUTE, SOCKET_TIMEOUT, SWEEP, Cluster

__all__ = ["CLAIM", "ROUTE", "SOCKET_TIMEOUT", "SWEEP", "Cluster"]
