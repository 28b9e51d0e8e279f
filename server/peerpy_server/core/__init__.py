"""The broker's sans-I/O core: no event loop, no sockets, no Redis, no Prometheus.

Layered bottom-up; each module imports only those above it:

* :mod:`~peerpy_server.core.stats`: the counters behind ``/metrics``;
* :mod:`~peerpy_server.core.realm`: the registry of ids, the queues for
  offline ids, the relay rules and the expiry and alive sweeps;
* :mod:`~peerpy_server.core.host`: the :class:`~peerpy_server.core.host.Host`
  and :class:`~peerpy_server.core.host.HttpView` Protocols (what the parts may
  use of the broker) and :data:`~peerpy_server.core.host.TICK`;
* :mod:`~peerpy_server.core.session`: one WebSocket's life whatever its
  transport (registration, rate and size limits, unregistration);
* :mod:`~peerpy_server.core.admission`: the table of open connections
  (per-address limits, the handshake deadline, the ping round);
* :mod:`~peerpy_server.core.limiter`: token buckets per source address in a
  bounded table (STUN answers, ``/ice`` refusals);
* :mod:`~peerpy_server.core.ice_access`: who gets ``/ice`` (key, id and
  token, here or cluster-wide; refusals bounded per address).

Time is passed in as ``now`` (seconds, monotonic) or read through the host's
``now()``; tests drive all of it with fakes and a moved clock
(``tests/unit/server/``).  Importing this package pulls in neither asyncio,
websockets, redis nor prometheus_client (a test checks it).
"""
