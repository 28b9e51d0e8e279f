"""PeerJS-style event handlers: ``peer.on("connection", handler)``.

peerpy's primary API is awaitables and async iterators; handlers exist for
code ported from PeerJS.  A handler may be a plain function or a coroutine
function; coroutines run in the owning peer's task group.  An exception in a
handler is logged and does not affect the peer or other handlers.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, Literal, TypeVar, get_args

from .exceptions import UsageError

__all__ = [
    "CONNECTION_EVENTS",
    "DATA_CONNECTION_EVENTS",
    "PEER_EVENTS",
    "ConnectionEvent",
    "DataConnectionEvent",
    "EventEmitter",
    "PeerEvent",
    "check_event",
]

#: The events of :meth:`peerpy.Peer.on` (typed, so that a misspelt name is a type error).
PeerEvent = Literal["open", "connection", "call", "disconnected", "close", "error"]
PEER_EVENTS: tuple[str, ...] = get_args(PeerEvent)
#: The events every connection has (data and media).
ConnectionEvent = Literal["open", "close", "error", "iceStateChanged"]
CONNECTION_EVENTS: tuple[str, ...] = get_args(ConnectionEvent)
#: The events of :meth:`peerpy.DataConnection.on`: PeerJS's, and a resumable
#: connection's ``reconnecting`` (its peer connection is lost; argument: the
#: error) and ``resumed`` (it goes on over a new one).
DataConnectionEvent = Literal[ConnectionEvent, "data", "reconnecting", "resumed"]
DATA_CONNECTION_EVENTS: tuple[str, ...] = (*CONNECTION_EVENTS, "data", "reconnecting", "resumed")

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)
Spawner = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


def check_event(event: str, events: Collection[str]) -> None:
    """Raise UsageError unless ``event`` is one of ``events``."""
    if event not in events:
        raise UsageError(f"unknown event {event!r}; events are: {', '.join(sorted(events))}")


class EventEmitter:
    """Handlers for a fixed set of event names."""

    def __init__(self, events: Collection[str], spawn: Spawner, logger: logging.Logger) -> None:
        self._handlers: dict[str, list[Handler]] = {name: [] for name in events}
        self._spawn = spawn
        self._log = logger

    def on(self, event: str, handler: H, *, replay: tuple[Any, ...] | None = None) -> H:
        """Call ``handler(*args)`` each time ``event`` happens; returns ``handler``.

        With ``replay``, ``event`` already happened (a connection or peer that
        is open): ``handler(*replay)`` also runs at once, alone, as PeerJS code
        expects when it registers ``open`` after the object opened.
        """
        check_event(event, self._handlers)
        self._handlers[event].append(handler)
        if replay is not None:
            self._call(event, handler, replay)
        return handler

    def off(self, event: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``event`` (no error if it was not registered)."""
        handlers = self._handlers.get(event, [])
        if handler in handlers:
            handlers.remove(handler)

    def has(self, event: str) -> bool:
        """Whether any handler listens to ``event``."""
        return bool(self._handlers.get(event))

    def emit(self, event: str, *args: Any) -> None:
        """Call every handler of ``event``; never raises."""
        for handler in list(self._handlers[event]):
            self._call(event, handler, args)

    def _call(self, event: str, handler: Handler, args: tuple[Any, ...]) -> None:
        """Call one handler; a coroutine runs in the owner's task group.  Never raises."""
        try:
            result = handler(*args)
        except Exception:
            self._log.exception("%s handler %r failed", event, handler)
            return
        if inspect.isawaitable(result):
            self._spawn(self._guard(event, handler, result))

    def _guard(
        self, event: str, handler: Handler, awaitable: Awaitable[Any]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                self._log.exception("%s handler %r failed", event, handler)

        return run
