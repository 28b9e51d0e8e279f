"""Fakes for the broker's core: a Host with a hand-moved clock, a Session that records."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from peerpy_server.config import BrokerConfig
from peerpy_server.core.host import Claims, HttpView, Registration
from peerpy_server.core.realm import Client, Realm
from peerpy_server.core.session import Session
from peerpy_server.core.stats import Stats
from peerpy_server.logs import WarningLimiter


class FakeHost:
    """A :class:`~peerpy_server.core.host.Host` over a real realm; ``clock`` is moved by hand."""

    def __init__(self, cluster: Claims | None = None, **options: Any) -> None:
        self.config = BrokerConfig(port=0, **options)
        self.clock = 0.0
        self.stats = Stats()
        self.warnings = WarningLimiter(None)
        self.realm = Realm(self.config, self.warnings, stats=self.stats)
        self.cluster = cluster
        self.running = True
        self.forgotten: list[Session] = []
        self.settled_sessions: list[Session] = []
        self.closing_later: list[Session] = []
        self.writes = 0

    @property
    def view(self) -> HttpView:
        raise AssertionError("the core never reads the HTTP view")

    def now(self) -> float:
        return self.clock

    def admit(self, session: Session) -> bool:
        return self.running

    def settled(self, session: Session) -> None:
        self.settled_sessions.append(session)

    def forget(self, session: Session) -> None:
        self.forgotten.append(session)

    def close_later(self, session: Session) -> None:
        self.closing_later.append(session)

    def write_gathered(self) -> None:
        self.writes += 1


class FakeSession(Session):
    """A session whose transport records what it is asked to do."""

    __slots__ = ("aborted", "attaches", "closed", "frames", "gone_away")

    def __init__(self, host: FakeHost, ip: str = "192.0.2.1") -> None:
        super().__init__(host, ip)
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str] | None = None
        self.aborted = False
        self.gone_away = False
        self.attaches = 0

    def send(self, frame: str) -> bool:
        self.frames.append(json.loads(frame))
        return True

    def close(self, code: int | None = None, reason: str = "") -> None:
        self.closed = (code, reason)

    def abort(self) -> None:
        self.aborted = True

    @property
    def is_websocket(self) -> bool:
        return True

    @property
    def closing(self) -> bool:
        return self.gone_away

    def attached(self) -> None:
        self.attaches += 1


class FakeClaims:
    """Cluster mode's claim, answered when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, Callable[[Client | None], None]]] = []

    def claim(self, link: Any, asked: Registration, done: Callable[[Client | None], None]) -> None:
        self.pending.append((asked.peer_id, done))
