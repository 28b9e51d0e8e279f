"""The broker's sans-I/O core: who is registered, what is queued, who is alive.

A :class:`Realm` holds the registry of ids, the queues of messages waiting for
offline ids and the liveness bookkeeping, and applies ``peer`` 1.0.2's relay
rules (spec §1.3–§1.6) plus our documented improvements.  It does no I/O and
reads no clock: the caller passes ``now`` (seconds, monotonic) and gives each
client a :class:`Link`, the two-method interface through which the realm sends
frames and closes sockets.  Tests drive it with fake links.

The I/O layer calls, for each WebSocket:

* :meth:`Realm.connect` once, after the handshake; it returns the
  :class:`Client` record, or ``None`` after sending the refusal and closing;
* :meth:`Realm.receive` for each message;
* :meth:`Realm.disconnect` when the socket is gone;

and :meth:`Realm.sweep` periodically (expiry and alive timeout).

Both the registry and the queues are insertion-ordered dicts kept sorted by
time (a HEARTBEAT moves its client to the end), so a sweep only looks at the
entries that are actually due.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final, Protocol

from peerpy.exceptions import ProtocolError
from peerpy.messages import (
    Heartbeat,
    IdTaken,
    Open,
    RelayType,
    ServerErrorMessage,
    parse_for_relay,
    serialize,
    serialize_relay,
)

from .config import BrokerConfig

__all__ = ["Client", "Link", "Realm", "truncate"]

logger: Final = logging.getLogger("peerpy_server.realm")

NO_PARAMS: Final = "No id, token, or key supplied to websocket server"
INVALID_KEY: Final = "Invalid key provided"
LIMIT_REACHED: Final = "Server has reached its concurrent user limit"

_OPEN: Final = serialize(Open())
_ID_TAKEN: Final = serialize(IdTaken())
_LEAVE: Final = RelayType.LEAVE
_EXPIRE: Final = RelayType.EXPIRE


def truncate(data: str | bytes, limit: int = 120) -> str:
    """Shorten a payload for a log line."""
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


class Link(Protocol):
    """What the realm needs from one client's socket."""

    def send(self, frame: str) -> bool:
        """Queue ``frame`` for sending; return ``False`` if the client was cut off instead."""

    def close(self, code: int | None = None, reason: str = "") -> None:
        """Close the socket (``code=None`` sends a close frame without a status)."""


class Client:
    """One WebSocket's registration: its id, token, link and last HEARTBEAT time.

    A same-token takeover makes a new record; the old record keeps its id (its
    messages are still relayed with that ``src``, as ``peer`` does) but is no
    longer the registered one.
    """

    __slots__ = ("id", "last_ping", "link", "token")

    def __init__(self, peer_id: str, token: str, link: Link, last_ping: float) -> None:
        self.id = peer_id
        self.token = token
        self.link = link
        self.last_ping = last_ping

    def __repr__(self) -> str:
        return f"<Client {self.id!r}>"


class _Queue:
    """Messages waiting for one offline id, and who sent them."""

    __slots__ = ("created", "frames", "senders", "size")

    def __init__(self, created: float) -> None:
        self.created = created
        self.frames: deque[str] = deque()
        self.senders: dict[str, None] = {}  # ordered set of distinct srcs
        self.size = 0


class Realm:
    """Registry, queues and relay rules of one broker (see the module docstring)."""

    def __init__(self, config: BrokerConfig) -> None:
        self._config = config
        self._clients: dict[str, Client] = {}
        self._queues: dict[str, _Queue] = {}
        self._queued = 0

    # -- inspection -------------------------------------------------------

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._clients

    def ids(self) -> list[str]:
        """The registered ids, oldest HEARTBEAT first."""
        return list(self._clients)

    def queued(self, peer_id: str) -> int:
        """How many messages wait for ``peer_id``."""
        queue = self._queues.get(peer_id)
        return 0 if queue is None else len(queue.frames)

    @property
    def queued_size(self) -> int:
        """Total size (characters of JSON) of every queued message."""
        return self._queued

    # -- connection lifecycle --------------------------------------------

    def connect(
        self, link: Link, *, key: str, peer_id: str, token: str, now: float
    ) -> Client | None:
        """Register a new socket, following ``peer``'s order of checks (spec §1.3).

        Return the client record, or ``None`` after sending the refusal
        (ERROR or ID-TAKEN) and closing ``link``.
        """
        config = self._config
        if not (key and peer_id and token):
            self._refuse(link, serialize(ServerErrorMessage(NO_PARAMS)))
            return None
        if key != config.key:
            self._refuse(link, serialize(ServerErrorMessage(INVALID_KEY)))
            return None
        pattern = config.id_pattern
        if pattern is not None and pattern.fullmatch(peer_id) is None:
            self._refuse(link, serialize(ServerErrorMessage(f'ID "{peer_id}" is invalid')))
            return None
        current = self._clients.get(peer_id)
        if current is not None and current.token != token:
            self._refuse(link, _ID_TAKEN)
            return None
        if current is None and len(self._clients) >= config.concurrent_limit:
            self._refuse(link, serialize(ServerErrorMessage(LIMIT_REACHED)))
            return None

        if current is None:
            client = Client(peer_id, token, link, now)
            self._clients[peer_id] = client
            logger.info("Client connected: %s", truncate(peer_id))
            opened = link.send(_OPEN)
        elif config.open_on_takeover:
            # Improvement: the new socket gets OPEN, the old one is closed,
            # and liveness starts afresh.
            client = Client(peer_id, token, link, now)
            del self._clients[peer_id]
            self._clients[peer_id] = client
            logger.info("Client reconnected (same token): %s", truncate(peer_id))
            current.link.close(1000, "superseded by a new connection")
            opened = link.send(_OPEN)
        else:
            # peer 1.0.2: silent swap, old socket left open, lastPing kept.
            client = Client(peer_id, token, link, current.last_ping)
            self._clients[peer_id] = client
            logger.info("Client reconnected (same token, no OPEN): %s", truncate(peer_id))
            opened = True
        if not opened:
            self._drop(client, "cut off while opening")
            return None
        self._flush(client)
        return client

    def _refuse(self, link: Link, frame: str) -> None:
        logger.info("Refused a connection: %s", frame)
        link.send(frame)
        link.close(None)

    def _flush(self, client: Client) -> None:
        queue = self._queues.pop(client.id, None)
        if queue is None:
            return
        self._queued -= queue.size
        send = client.link.send
        for frame in queue.frames:
            if not send(frame):
                self._drop(client, "cut off while flushing its queue")
                return

    def disconnect(self, client: Client) -> None:
        """Forget ``client`` after its socket closed (a no-op unless it is the registered one).

        Like ``peer``, the messages queued for its id are kept.
        """
        if self._clients.get(client.id) is client:
            del self._clients[client.id]
            logger.info("Client disconnected: %s", truncate(client.id))

    def _drop(self, client: Client, reason: str) -> None:
        """Unregister ``client`` (if current) and close its socket."""
        if self._clients.get(client.id) is client:
            del self._clients[client.id]
        logger.warning("Dropped client %s: %s", truncate(client.id), reason)
        client.link.close(None)

    # -- messages ----------------------------------------------------------

    def receive(self, client: Client, frame: str | bytes, now: float) -> None:
        """Handle one message from ``client`` (spec §1.4).

        Bad JSON, unknown types and malformed envelopes are logged and
        ignored; the client stays connected (``peer`` stops relaying for a
        client after its first bad frame, we do not).
        """
        try:
            message = parse_for_relay(frame, client.id)
        except ProtocolError as exc:
            logger.warning("Ignored a bad frame from %s (%s): %s", client.id, exc, truncate(frame))
            return
        if type(message) is tuple:
            kind, dst, forward = message
            self._relay(client, kind, dst, forward, now)
        elif type(message) is Heartbeat:
            if self._clients.get(client.id) is client:
                client.last_ping = now
                # Keep the registry ordered by last HEARTBEAT.
                del self._clients[client.id]
                self._clients[client.id] = client
        else:
            logger.debug("Ignored a %s message from %s", type(message).__name__, client.id)

    def _relay(
        self, client: Client, kind: RelayType, dst: str | None, frame: str, now: float
    ) -> None:
        """Forward ``frame`` (already rewritten with ``src`` = the sender) to ``dst``."""
        target = self._clients.get(dst) if dst else None
        if target is not None:
            self._deliver(target, frame, client)
        elif dst and kind is not _LEAVE and kind is not _EXPIRE:
            self._enqueue(client.id, dst, frame, now)
        elif kind is _LEAVE and not dst:
            if self._clients.get(client.id) is client:
                del self._clients[client.id]
                logger.info("Client left: %s", truncate(client.id))
        else:
            logger.debug("Dropped %s for offline %s", kind.value, dst)

    def _deliver(self, target: Client, frame: str, sender: Client | None) -> None:
        """Send ``frame`` to ``target``; if that cuts it off, tell ``sender`` with LEAVE."""
        if target.link.send(frame):
            return
        self._drop(target, "its outgoing buffer overflowed")
        if sender is not None and sender is not target:
            leave = serialize_relay(_LEAVE, target.id, sender.id)
            self._deliver(sender, leave, None)

    def _enqueue(self, src: str, dst: str, frame: str, now: float) -> None:
        config = self._config
        queue = self._queues.get(dst)
        if queue is None:
            queue = self._queues[dst] = _Queue(now)
        size = len(frame)
        if (
            len(queue.frames) >= config.max_queue_messages
            or queue.size + size > config.max_queue_bytes
            or self._queued + size > config.max_queued_bytes
        ):
            logger.warning("Queue for %s is full; dropped: %s", truncate(dst), truncate(frame))
        else:
            queue.frames.append(frame)
            queue.size += size
            self._queued += size
        # The sender still gets its EXPIRE, even for a dropped message.
        if src not in queue.senders and len(queue.senders) < config.max_queue_messages:
            queue.senders[src] = None

    # -- timers ------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Expire old queues (one EXPIRE per sender) and drop clients past ``alive_timeout``."""
        expire_before = now - self._config.expire_timeout
        queues = self._queues
        while queues:
            dst, queue = next(iter(queues.items()))
            if queue.created > expire_before:
                break
            del queues[dst]
            self._queued -= queue.size
            for src in queue.senders:
                target = self._clients.get(src)
                if target is not None:
                    self._deliver(target, serialize_relay(_EXPIRE, dst, src), None)

        dead_before = now - self._config.alive_timeout
        clients = self._clients
        while clients:
            client = next(iter(clients.values()))
            if client.last_ping > dead_before:
                break
            self._drop(client, "no HEARTBEAT within alive_timeout")
            dropped = queues.pop(client.id, None)
            if dropped is not None:
                self._queued -= dropped.size
