"""Cluster mode: brokers sharing one realm through Redis (``--redis URL``).

Each broker process (an *instance*, named by a random hex string) keeps its
own clients in its in-memory :class:`~peerpy_server.core.realm.Realm`, as without
Redis; Redis holds what must be shared, under ``redis_prefix`` (the layout is
in :mod:`.scripts`):

* ``id:<id>`` = ``"<instance> <token>"``, with a time to live of
  ``alive_timeout``, refreshed by its instance every third of it: the
  cluster-wide registry.  A claim (:data:`CLAIM`) is atomic: a free id or the
  same token wins (a same-token takeover works across instances; the previous
  instance is told to close its socket), another token gets ``ID-TAKEN``.  An
  instance that dies stops refreshing, so its ids are free again within
  ``alive_timeout``.
* ``q:<id>``, ``qs:<id>``, ``qb:<id>`` and the sorted set ``expiry``: the
  offline queues (frames, senders, bytes, creation time from Redis' clock),
  bounded by ``max_queue_messages`` and ``max_queue_bytes`` per id.  Expiry
  (:data:`SWEEP`) pops due queues atomically, whichever instance runs it, so
  each sender gets exactly one EXPIRE per destination.
* the channel ``inst:<instance>``: messages relayed to a client that instance
  holds.  :data:`ROUTE` handles a run of messages in one call: it publishes
  them to their owners (one PUBLISH per instance), or queues them when the id
  has no owner or its owner is gone (no subscriber).

Routes to an id whose owner is cached (:mod:`.owners`) skip the Lua lookup:
one plain PUBLISH per instance and batch (:mod:`.batch`).  A message forwarded
by a stale cache entry can arrive after a later one that went straight to the
new owner: only while an id moves between instances, a window of about one
Redis round trip.

The package, bottom-up (only :mod:`.wire`, :mod:`.writer` and :mod:`.instance` do I/O)::

    scripts   the Lua scripts and the one key builder (Keys)
    ops       typed operations (Route, Publish, Eval) and calls
    codec     the batches instances relay to each other
    owners    the owner cache
    outbox    the ordered, bounded outbox
    batch     the batch compiler: operations -> Redis calls
    wire      Redis: pipelines, NOSCRIPT reload, publisher, subscription
    host      what the cluster uses of the broker (a Protocol)
    writer    the outbox written to Redis in order, batch by batch
    rooms     the members of every room, in Redis
    instance  Cluster: claims, routes, the subscriber and timers
"""

from __future__ import annotations

from .instance import Cluster
from .scripts import CLAIM, ROUTE, SWEEP
from .wire import SOCKET_TIMEOUT

__all__ = ["CLAIM", "ROUTE", "SOCKET_TIMEOUT", "SWEEP", "Cluster"]
