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

with :attr:`Realm.rooms` (:class:`RoomHook`) given the room messages of the
registered clients and told of every client that is gone, whatever the reason
(disconnect, LEAVE, alive timeout, cut off, moved to another instance);

and :meth:`Realm.sweep` periodically (expiry and alive timeout).

The registry is an insertion-ordered dict kept sorted by time (a HEARTBEAT
moves its client to the end); queues are found by id in a dict and expire
through a deque of queues in creation order (lazy deletion: a queue flushed
early stays in the deque, empty, until its time).  A sweep therefore costs
time proportional to what is due, and takes a ``limit`` so the I/O layer can
spread a large expiry over several slices and serve other clients in between.

Memory of queues is accounted as what it really costs, not as characters of
JSON: :data:`QUEUE_OVERHEAD`, :data:`MESSAGE_OVERHEAD` and
:data:`SENDER_OVERHEAD` were measured with :mod:`tracemalloc`
(``tests/unit/server/test_realm.py`` measures them again), and strings count as
``sys.getsizeof``.  A queue's overhead stays charged until its deque entry
is swept, so the budget covers flushed entries too.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

from peerpy_protocol.exceptions import ProtocolError
from peerpy_protocol.messages import (
    Heartbeat,
    IdTaken,
    Open,
    RelayType,
    ServerErrorMessage,
    Unknown,
    parse_for_relay,
    serialize,
    serialize_relay,
)
from peerpy_protocol.rooms import OPEN_WITH_ROOMS, ROOM_TYPES

from ..config import BrokerConfig
from ..logs import WarningLimiter
from .stats import Stats

__all__ = [
    "MESSAGE_OVERHEAD",
    "QUEUE_OVERHEAD",
    "SENDER_OVERHEAD",
    "Client",
    "Link",
    "Realm",
    "RoomHook",
    "truncate",
]

logger: Final = logging.getLogger("peerpy_server.realm")

NO_PARAMS: Final = "No id, token, or key supplied to websocket server"
INVALID_KEY: Final = "Invalid key provided"
LIMIT_REACHED: Final = "Server has reached its concurrent user limit"

_OPEN: Final = serialize(Open())
_OPEN_ROOMS: Final = OPEN_WITH_ROOMS
_ID_TAKEN: Final = serialize(IdTaken())
_LEAVE: Final = RelayType.LEAVE
_EXPIRE: Final = RelayType.EXPIRE
_sizeof: Final = sys.getsizeof

#: Bytes one queue costs besides its strings: the ``_Queue`` object, its list of
#: frames, its dict of senders (with its first entry), its slot in the queues
#: dict and in the expiry deque (tracemalloc: about 440 bytes on CPython 3.10,
#: 380-410 on 3.11; rounded up).
QUEUE_OVERHEAD: Final = 480
#: Bytes one queued message costs besides ``sys.getsizeof`` of its frame (its
#: deque slot, amortized).
MESSAGE_OVERHEAD: Final = 16
#: Bytes one recorded sender costs besides its id string (a dict entry, amortized;
#: the id string itself is counted too, although it is usually shared).
SENDER_OVERHEAD: Final = 48


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


class RoomHook(Protocol):
    """What the realm tells the rooms (:class:`peerpy_server.core.rooms.Rooms`)."""

    def receive(self, client: Client, envelope: dict[str, Any], now: float) -> None:
        """Handle a room message (``ROOM-...`` envelope) from the registered ``client``."""

    def drop(self, peer_id: str) -> None:
        """The registered client ``peer_id`` is gone: it leaves its rooms."""


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

    __slots__ = ("charge", "created", "dst", "frames", "senders", "size")

    def __init__(self, dst: str, created: float) -> None:
        self.dst = dst
        self.created = created
        self.frames: list[str] = []  # appended, then sent in order: a list is smaller
        self.senders: dict[str, None] = {}  # ordered set of distinct srcs
        self.size = 0  # characters of JSON queued (max_queue_bytes)
        self.charge = QUEUE_OVERHEAD + _sizeof(dst)  # bytes counted in Realm.queued_size


class Realm:
    """Registry, queues and relay rules of one broker (see the module docstring)."""

    def __init__(
        self,
        config: BrokerConfig,
        warnings: WarningLimiter | None = None,
        *,
        stats: Stats | None = None,
        authorize: Callable[[str, str], str | None] | None = None,
        remote: Callable[[Client, RelayType, str, str], None] | None = None,
        released: Callable[[Client], None] | None = None,
    ) -> None:
        self._config = config
        #: Counters for ``GET <path>metrics`` (see :mod:`peerpy_server.core.stats`).
        self.stats = stats if stats is not None else Stats()
        # authorize(id, token) -> None, or the reason to refuse (--jwt-secret).
        self._authorize = authorize
        # Cluster mode (peerpy_server.cluster): remote(client, kind, dst, frame)
        # relays to an id not connected here; released(client) frees its id.
        self._remote = remote
        self._released = released
        self._clients: dict[str, Client] = {}
        self._queues: dict[str, _Queue] = {}  # live queues by destination
        self._expiry: deque[_Queue] = deque()  # every queue not yet swept, oldest first
        self._sender_queues: dict[str, int] = {}  # src -> live queues it is a sender of
        self._queued = 0
        self._now = 0.0  # the time of the call being handled, for rate-limited warnings
        #: Where room messages go, and who is told of clients gone (``None``: no rooms).
        self.rooms: RoomHook | None = None
        #: Repeated warnings are logged through this (see :mod:`peerpy_server.logs`).
        self.warnings = (
            warnings if warnings is not None else WarningLimiter(config.warning_interval)
        )

    # -- inspection -------------------------------------------------------

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._clients

    def ids(self) -> list[str]:
        """The registered ids, oldest HEARTBEAT first."""
        return list(self._clients)

    def client(self, peer_id: str) -> Client | None:
        """The registered record of ``peer_id``, or ``None``."""
        return self._clients.get(peer_id)

    def clients(self) -> Iterator[Client]:
        """The registered records, oldest HEARTBEAT first.

        The iterator reads the registry as it is: take a ``list`` of it before
        calling anything that may register or drop a client.
        """
        return iter(self._clients.values())

    def queued(self, peer_id: str) -> int:
        """How many messages wait for ``peer_id``."""
        queue = self._queues.get(peer_id)
        return 0 if queue is None else len(queue.frames)

    @property
    def queued_size(self) -> int:
        """Bytes that queues take now, as accounted against ``max_queued_bytes``."""
        return self._queued

    @property
    def queued_messages(self) -> int:
        """Messages waiting for offline ids (costs one step per queue)."""
        return sum(len(queue.frames) for queue in self._queues.values())

    @property
    def queue_count(self) -> int:
        """Queues not yet swept (live ones and flushed ones awaiting their expiry)."""
        return len(self._expiry)

    # -- connection lifecycle --------------------------------------------

    def connect(
        self, link: Link, *, key: str, peer_id: str, token: str, now: float, rooms: bool = False
    ) -> Client | None:
        """Register a new socket, following ``peer``'s order of checks (spec §1.3).

        Return the client record, or ``None`` after sending the refusal
        (ERROR or ID-TAKEN) and closing ``link``.  ``rooms``: the client asked
        for the rooms extension (``ext=rooms``), so OPEN says the broker has it.
        """
        self._now = now
        config = self._config
        if not self.precheck(link, key=key, peer_id=peer_id, token=token):
            return None
        current = self._clients.get(peer_id)
        if current is not None and current.token != token:
            self.refuse_taken(link)
            return None
        if current is None and len(self._clients) >= config.concurrent_limit:
            self._refuse(link, serialize(ServerErrorMessage(LIMIT_REACHED)), "limit-reached")
            return None

        if current is None:
            client = Client(peer_id, token, link, now)
            self._clients[peer_id] = client
            logger.info("Client connected: %s", truncate(peer_id))
            opened = link.send(_OPEN_ROOMS if rooms and self.rooms is not None else _OPEN)
        elif config.open_on_takeover:
            # Improvement: the new socket gets OPEN, the old one is closed,
            # and liveness starts afresh.
            client = Client(peer_id, token, link, now)
            del self._clients[peer_id]
            self._clients[peer_id] = client
            logger.info("Client reconnected (same token): %s", truncate(peer_id))
            current.link.close(1000, "superseded by a new connection")
            opened = link.send(_OPEN_ROOMS if rooms and self.rooms is not None else _OPEN)
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

    def precheck(self, link: Link, *, key: str, peer_id: str, token: str) -> bool:
        """The checks of :meth:`connect` that need no registry; ``False`` after refusing."""
        if not (key and peer_id and token):
            self._refuse(link, serialize(ServerErrorMessage(NO_PARAMS)), "no-params")
            return False
        if key != self._config.key:
            self._refuse(link, serialize(ServerErrorMessage(INVALID_KEY)), "invalid-key")
            return False
        if self._authorize is not None:
            problem = self._authorize(peer_id, token)
            if problem is not None:
                logger.info("Refused id %s from %s: %s", truncate(peer_id), getattr(link, "ip", "?"), problem)  # fmt: skip # noqa: E501
                self._refuse(link, serialize(ServerErrorMessage(problem)), "invalid-token")
                return False
        pattern = self._config.id_pattern
        if pattern is not None and pattern.fullmatch(peer_id) is None:
            message = ServerErrorMessage(f'ID "{peer_id}" is invalid')
            self._refuse(link, serialize(message), "invalid-id")
            return False
        return True

    def refuse_taken(self, link: Link) -> None:
        """Answer ID-TAKEN and close."""
        self._refuse(link, _ID_TAKEN, "id-taken")

    def refuse(self, link: Link, frame: str, reason: str) -> None:
        """Send ``frame`` (an ERROR), close ``link`` and count the refusal under ``reason``."""
        self._refuse(link, frame, reason)

    def deliver_local(self, peer_id: str, frame: str) -> bool:
        """Send ``frame`` to ``peer_id`` if it is connected here; ``False`` if it is not."""
        target = self._clients.get(peer_id)
        if target is None:
            return False
        self._deliver(target, frame, None)
        return True

    def supersede(self, peer_id: str, token: str | None) -> None:
        """Another instance now holds ``peer_id`` (with ``token``): close ours.

        ``token=None``: whatever its token (our registration was lost).
        """
        client = self._clients.get(peer_id)
        if client is None or (token is not None and client.token != token):
            return
        del self._clients[peer_id]  # not released: the id is someone else's now
        if self.rooms is not None:
            self.rooms.drop(peer_id)
        logger.info("Client moved to another instance: %s", truncate(peer_id))
        client.link.close(1000, "superseded by a new connection")

    def _unregister(self, client: Client) -> None:
        del self._clients[client.id]
        if self.rooms is not None:
            self.rooms.drop(client.id)
        if self._released is not None:
            self._released(client)

    def _refuse(self, link: Link, frame: str, reason: str) -> None:
        logger.info("Refused a connection: %s", frame)
        self.stats.refuse(reason)
        link.send(frame)
        link.close(None)

    def _flush(self, client: Client) -> None:
        queue = self._queues.pop(client.id, None)
        if queue is None:
            return
        frames = queue.frames
        self._retire(queue)
        send = client.link.send
        for frame in frames:
            if not send(frame):
                self._drop(client, "cut off while flushing its queue")
                return

    def _retire(self, queue: _Queue) -> None:
        """Release what a queue removed from ``_queues`` holds, but its base overhead.

        The base overhead stays charged until :meth:`sweep` pops its deque entry.
        """
        counts = self._sender_queues
        for src in queue.senders:
            left = counts[src] - 1
            if left:
                counts[src] = left
            else:
                del counts[src]
        base = QUEUE_OVERHEAD + _sizeof(queue.dst)
        self._queued -= queue.charge - base
        queue.charge = base
        queue.frames = []
        queue.senders = {}
        queue.size = 0

    def disconnect(self, client: Client) -> None:
        """Forget ``client`` after its socket closed (a no-op unless it is the registered one).

        Like ``peer``, the messages queued for its id are kept.
        """
        if self._clients.get(client.id) is client:
            self._unregister(client)
            logger.info("Client disconnected: %s", truncate(client.id))

    def _drop(self, client: Client, reason: str) -> None:
        """Unregister ``client`` (if current) and close its socket."""
        if self._clients.get(client.id) is client:
            self._unregister(client)
        self.warnings.warning(
            logger,
            f"dropped: {reason}",
            self._now,
            "Dropped client %s: %s",
            truncate(client.id),
            reason,
        )
        client.link.close(None)

    # -- messages ----------------------------------------------------------

    def receive(self, client: Client, frame: str | bytes, now: float) -> None:
        """Handle one message from ``client`` (spec §1.4).

        Bad JSON, unknown types and malformed envelopes are logged and
        ignored; the client stays connected (``peer`` stops relaying for a
        client after its first bad frame, we do not).
        """
        self._now = now
        try:
            message = parse_for_relay(frame, client.id)
        except ProtocolError as exc:
            self.warnings.warning(
                logger,
                "bad-frame",
                now,
                "Ignored a bad frame from %s (%s): %s",
                truncate(client.id),
                exc,
                truncate(frame),
            )
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
        elif (
            type(message) is Unknown
            and message.type in ROOM_TYPES
            and self.rooms is not None
            and self._clients.get(client.id) is client
        ):
            self.rooms.receive(client, message.raw, now)
        else:
            logger.debug("Ignored a %s message from %s", type(message).__name__, client.id)

    def _relay(
        self, client: Client, kind: RelayType, dst: str | None, frame: str, now: float
    ) -> None:
        """Forward ``frame`` (already rewritten with ``src`` = the sender) to ``dst``."""
        self.stats.relayed[kind] += 1
        target = self._clients.get(dst) if dst else None
        if target is not None:
            self._deliver(target, frame, client)
        elif dst and self._remote is not None:
            self._remote(client, kind, dst, frame)
        elif dst and kind is not _LEAVE and kind is not _EXPIRE:
            self._enqueue(client, dst, frame, now)
        elif kind is _LEAVE and not dst:
            if self._clients.get(client.id) is client:
                self._unregister(client)
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

    def _enqueue(self, client: Client, dst: str, frame: str, now: float) -> None:
        """Queue ``frame`` for the offline ``dst``, within every bound.

        A message that does not fit an existing queue is dropped and its sender
        still gets that queue's one EXPIRE.  A message that would need a new
        queue (or a new sender entry) beyond ``max_queues``,
        ``max_queues_per_sender`` or ``max_queued_bytes`` is dropped and its
        sender gets EXPIRE at once.
        """
        config = self._config
        src = client.id
        queue = self._queues.get(dst)
        new_sender = queue is None or src not in queue.senders
        per_sender = config.max_queues_per_sender
        if new_sender and per_sender is not None and self._sender_queues.get(src, 0) >= per_sender:
            self._refuse_queue(client, dst, now, "it has messages queued for too many ids")
            return
        if queue is None:
            queue = _Queue(dst, now)
            max_queues = config.max_queues
            if (max_queues is not None and len(self._expiry) >= max_queues) or (
                self._queued + queue.charge > config.max_queued_bytes
            ):
                self._refuse_queue(client, dst, now, "the queues are full")
                return
            self._queues[dst] = queue
            self._expiry.append(queue)
            self._queued += queue.charge
        size = len(frame)
        cost = MESSAGE_OVERHEAD + _sizeof(frame)
        if (
            len(queue.frames) >= config.max_queue_messages
            or queue.size + size > config.max_queue_bytes
            or self._queued + cost > config.max_queued_bytes
        ):
            self.warnings.warning(
                logger, "queue-full", now, "Queue for %s is full; dropped: %s",
                truncate(dst), truncate(frame),
            )  # fmt: skip
        else:
            queue.frames.append(frame)
            queue.size += size
            queue.charge += cost
            self._queued += cost
        if not new_sender:
            return
        # The sender still gets its EXPIRE, even for a dropped message.
        cost = SENDER_OVERHEAD + _sizeof(src)
        if (
            len(queue.senders) < config.max_queue_messages
            and self._queued + cost <= config.max_queued_bytes
        ):
            queue.senders[src] = None
            queue.charge += cost
            self._queued += cost
            self._sender_queues[src] = self._sender_queues.get(src, 0) + 1
        elif not queue.frames:
            self._refuse_queue(client, dst, now, "the queues are full")

    def _refuse_queue(self, client: Client, dst: str, now: float, reason: str) -> None:
        """Drop a message for the offline ``dst`` and answer EXPIRE at once."""
        self.warnings.warning(
            logger, "queue-refused", now, "Not queued for %s from %s: %s",
            truncate(dst), truncate(client.id), reason,
        )  # fmt: skip
        self.stats.refuse("queue-full")
        self.stats.expired += 1
        self._deliver(client, serialize_relay(_EXPIRE, dst, client.id), None)

    # -- timers ------------------------------------------------------------

    def sweep(self, now: float, limit: int | None = None) -> bool:
        """Expire old queues (one EXPIRE per sender) and drop clients past ``alive_timeout``.

        At most ``limit`` queues and clients are handled (``None``: all that
        are due); return ``True`` if more are due, so the caller can yield to
        other work and call again.  Cost: proportional to what is handled.
        """
        self._now = now
        budget = -1 if limit is None else limit
        expire_before = now - self._config.expire_timeout
        expiry = self._expiry
        queues = self._queues
        clients = self._clients
        while expiry and budget:
            queue = expiry[0]
            if queue.created > expire_before:
                break
            expiry.popleft()
            budget -= 1
            dst = queue.dst
            if queues.get(dst) is queue:
                del queues[dst]
                senders = queue.senders
                self._retire(queue)
                for src in senders:
                    target = clients.get(src)
                    if target is not None:
                        self.stats.expired += 1
                        self._deliver(target, serialize_relay(_EXPIRE, dst, src), None)
            self._queued -= queue.charge
            queue.charge = 0

        dead_before = now - self._config.alive_timeout
        dead: list[Client] = []
        if budget:
            # One pass over the front of the dict (not next(iter()) after each
            # deletion, which rescans the deleted slots: quadratic).
            for client in clients.values():
                if client.last_ping > dead_before or len(dead) == budget:
                    break
                dead.append(client)
        for client in dead:
            self._drop(client, "no HEARTBEAT within alive_timeout")
            dropped = queues.pop(client.id, None)
            if dropped is not None:
                self._retire(dropped)
        budget -= len(dead)
        if budget:
            return False
        if expiry and expiry[0].created <= expire_before:
            return True
        return bool(clients) and next(iter(clients.values())).last_ping <= dead_before
