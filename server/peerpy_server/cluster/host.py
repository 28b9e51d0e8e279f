"""What the cluster uses of its broker: the narrow :class:`ClusterHost` Protocol.

The cluster never imports the broker (no import cycle, no TYPE_CHECKING
import of ``Broker``): :class:`~peerpy_server.Broker` satisfies these
Protocols structurally, and a test can hand the cluster something smaller.
The attribute names are the broker's own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from ..config import BrokerConfig
from ..core.realm import Client, Link

__all__ = ["ClusterHost", "ClusterRealm", "ClusterStats", "Warnings"]


class ClusterRealm(Protocol):
    """The realm calls of the cluster (claims, local delivery, supersession)."""

    def clients(self) -> Iterator[Client]:
        """The local clients (take a ``list`` before registering or dropping any)."""

    def ids(self) -> list[str]:
        """The ids registered on this broker."""

    def precheck(self, link: Link, *, key: str, peer_id: str, token: str) -> bool:
        """The realm's own checks of a registration; refuses (and says so) if they fail."""

    def connect(
        self, link: Link, *, key: str, peer_id: str, token: str, now: float, rooms: bool = False
    ) -> Client | None:
        """Register ``peer_id`` locally (it was claimed cluster-wide)."""

    def refuse(self, link: Link, frame: str, reason: str) -> None:
        """Send ``frame`` and close ``link``, counting ``reason``."""

    def refuse_taken(self, link: Link) -> None:
        """Answer ID-TAKEN and close ``link``."""

    def deliver_local(self, peer_id: str, frame: str) -> bool:
        """Send ``frame`` to the local client ``peer_id``; ``False`` if none."""

    def supersede(self, peer_id: str, token: str | None) -> None:
        """Close the local ``peer_id``: taken over with ``token`` elsewhere, or lost."""


class ClusterStats(Protocol):
    """The counters the cluster moves (``GET <path>metrics``)."""

    redis_round_trips: int
    expired: int

    def refuse(self, reason: str) -> None:
        """Count one refusal for ``reason`` (a fixed string)."""


class Warnings(Protocol):
    """The broker's rate-limited warnings."""

    def warning(
        self, logger: logging.Logger, key: str, now: float, msg: str, *args: object
    ) -> None:
        """Log ``msg % args`` unless ``key`` was logged lately."""


class ClusterHost(Protocol):
    """What :class:`~peerpy_server.cluster.Cluster` uses of the broker."""

    @property
    def config(self) -> BrokerConfig:
        """The broker's configuration."""

    @property
    def realm(self) -> ClusterRealm:
        """The broker's registry of local clients."""

    @property
    def stats(self) -> ClusterStats:
        """The broker's counters."""

    @property
    def warnings(self) -> Warnings:
        """The broker's rate-limited warnings."""

    def now(self) -> float:
        """The broker's monotonic clock (seconds)."""

    def write_gathered(self) -> None:
        """Write the frames gathered for the local clients (after a batch of deliveries)."""
