"""connect() across a cluster whose Redis is frozen: the error names the cluster store.

Two brokers on a real ``redis-server``, alice registered on one and bob on the
other, both real Peers.  Redis is stopped by PID (SIGSTOP, as a GC pause or a
partition without RST): alice's OFFER cannot be routed, and her ``connect()``
fails saying the cluster store is unreachable, not that bob does not exist.
"""

from __future__ import annotations

import os
import signal

import pytest
from peerpy_server.cluster import wire

from peerpy import Peer, PeerUnavailableError

from ...helpers.redis import running_redis
from ...helpers.targets import run_cluster

pytestmark = pytest.mark.anyio


async def test_connect_while_redis_is_frozen_names_the_cluster_store(
    peer_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker's EXPIRE carries the cause; connect() raises PeerUnavailableError with it."""
    monkeypatch.setattr(wire, "SOCKET_TIMEOUT", 1.5)  # Redis silent that long: it failed
    with running_redis() as redis_server:
        assert redis_server.proc is not None
        async with (
            run_cluster(redis_server.url, size=2) as target,
            Peer(peer_id + "a", server=f"http://127.0.0.1:{target.ports[0]}/myapp") as alice,
            Peer(peer_id + "b", server=f"http://127.0.0.1:{target.ports[1]}/myapp"),
        ):
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            try:
                with pytest.raises(PeerUnavailableError) as caught:
                    await alice.connect(peer_id + "b", timeout=10)
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            message = str(caught.value)
            assert message.startswith(f"Could not connect to peer {peer_id}b")
            assert "cluster store is unreachable" in message


async def test_an_unknown_peer_is_still_plainly_unavailable(peer_id: str) -> None:
    """Redis up, nobody registered as the id: PeerJS's message and why, no store named."""
    with running_redis() as redis_server:
        async with (
            run_cluster(redis_server.url, size=2, expire_timeout=0.5) as target,
            Peer(peer_id, server=f"http://127.0.0.1:{target.ports[0]}/myapp") as alice,
        ):
            with pytest.raises(PeerUnavailableError) as caught:
                await alice.connect(peer_id + "nobody", timeout=10)
            message = str(caught.value)
            assert message.startswith(f"Could not connect to peer {peer_id}nobody: ")
            assert f"no peer is registered as '{peer_id}nobody'" in message
            assert "cluster store" not in message
