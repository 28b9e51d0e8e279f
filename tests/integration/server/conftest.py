"""Fixtures of the broker's integration tests: brokers of each implementation, one redis-server.

The brokers themselves are started by tests/helpers/targets.py; the raw
clients that talk to them are in tests/helpers/signaling.py and http.py.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator

import pytest

from ...helpers.brokers import PEERJS_SERVER
from ...helpers.redis import RedisServer, running_redis
from ...helpers.shared import PerOptions
from ...helpers.targets import (
    StartBroker,
    Target,
    peer_process,
    run_asgi,
    run_asgi_cluster,
    run_cluster,
    run_ours,
    use_shared_peer,
)


@pytest.fixture(scope="module")
def shared_peer() -> Iterator[PerOptions[Target]]:
    """``peer`` 1.0.2 processes shared by a module's tests, one per option set.

    The tests of a module run one after the other, each closing its clients
    before it ends, so a shared ``peer`` holds no id or queued message from an
    earlier test; starting one per test cost about a second each.
    """
    servers = PerOptions(peer_process)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (each cluster uses its own key prefix)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run scripts/setup (Debian's redis-server)")
    with running_redis() as server:
        yield server


@pytest.fixture(params=["peerpy", "peer", "cluster", "asgi", "asgi-cluster"])
def start_broker(request: pytest.FixtureRequest) -> StartBroker:
    """Start a broker of each implementation (differential tests).

    "cluster" is 3 of ours on Redis; "asgi" ours mounted in a Starlette app
    under uvicorn; "asgi-cluster" 2 mounted ones and a built-in one on Redis.
    """
    if request.param == "peer" and not PEERJS_SERVER.exists():
        pytest.fail("tests/support/node_modules is missing: run npm ci in tests/support")
    if request.param in ("cluster", "asgi-cluster"):
        url = request.getfixturevalue("redis_server").url
        run = run_cluster if request.param == "cluster" else run_asgi_cluster
        return functools.partial(run, url)
    if request.param == "asgi":
        return run_asgi
    if request.param == "peer":
        return functools.partial(use_shared_peer, request.getfixturevalue("shared_peer"))
    return run_ours
