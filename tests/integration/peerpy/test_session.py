"""The broker session (peerpy.session) against the real broker requiring JWTs (``jwt_secret``).

An expired token under ``auto_reconnect``: the broker's refusal ends the
retries with an ``error`` event (``InvalidTokenError``), and a new token --
set on the peer, or from a token provider -- registers it again.  The broker
is really restarted on its port in between, as after a deploy or a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import jwt
import pytest
from anyio.from_thread import start_blocking_portal
from peerpy_server import Broker, BrokerConfig

from peerpy import sync
from peerpy.config import Timeouts
from peerpy.exceptions import InvalidTokenError, PeerError
from peerpy.peer import Peer

from ...helpers.brokers import free_port

pytestmark = pytest.mark.anyio

SECRET = "session-tests-secret-of-at-least-32-bytes"
#: Quick retries, so a retry loop that does not stop shows within a second.
QUICK = Timeouts(reconnect_initial=0.05, reconnect_max=0.2)


def mint(sub: str, ttl: float) -> str:
    """A JWT for ``sub`` that expires ``ttl`` seconds from now (whole seconds, as JWTs go)."""
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl)}, SECRET, algorithm="HS256")


def expired(token: str) -> bool:
    """Whether the broker refuses ``token`` as expired now (PyJWT: exp < now, no leeway)."""
    return bool(jwt.decode(token, options={"verify_signature": False})["exp"] < time.time())


def config(port: int) -> BrokerConfig:
    return BrokerConfig(host="127.0.0.1", port=port, path="/myapp", jwt_secret=SECRET)


class Restartable:
    """The real broker on a fixed port, stopped and started again by the test."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/myapp/"
        self._stack = stack
        self._inner: contextlib.AsyncExitStack | None = None
        self.broker: Broker | None = None

    async def start(self) -> Broker:
        self._inner = await self._stack.enter_async_context(contextlib.AsyncExitStack())
        self.broker = await self._inner.enter_async_context(Broker(config(self.port)))
        return self.broker

    async def stop(self) -> None:
        assert self._inner is not None
        await self._inner.aclose()
        self.broker = None

    def refusals(self) -> int:
        assert self.broker is not None
        return self.broker.stats.refused.get("invalid-token", 0)


@pytest.fixture
async def broker() -> AsyncIterator[Restartable]:
    async with contextlib.AsyncExitStack() as stack:
        restartable = Restartable(stack)
        await restartable.start()
        yield restartable


class Events:
    """What a peer reported: its ``error`` events and how many ``open``."""

    def __init__(self, peer: Peer) -> None:
        self.errors: list[PeerError] = []
        self.opens = 0
        peer.on("error", self.errors.append)
        peer.on("open", lambda _: self.opened())
        self.opens = 0  # on an open peer the handler ran at once (a PeerJS habit): count anew

    def opened(self) -> None:
        self.opens += 1


async def wait_for(condition: Callable[[], bool], limit: float) -> None:
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 - polling what the peer reported
            await anyio.sleep(0.02)


async def outlive(token: str, broker: Restartable) -> None:
    """Stop the broker, wait until ``token`` has expired, start it again."""
    await broker.stop()
    while not expired(token):  # noqa: ASYNC110 - waiting for the wall clock
        await anyio.sleep(0.1)
    await broker.start()


async def test_a_refused_token_ends_the_retries_and_a_new_one_reconnects(
    broker: Restartable, peer_id: str
) -> None:
    """auto_reconnect with an expired JWT: one error event (InvalidTokenError), no more
    attempts; setting peer.token registers the peer again by itself."""
    token = mint(peer_id, 2)
    async with Peer(
        peer_id, server=broker.url, token=token, auto_reconnect=True, timeouts=QUICK
    ) as peer:
        events = Events(peer)
        await outlive(token, broker)
        await wait_for(lambda: any(isinstance(e, InvalidTokenError) for e in events.errors), 10)
        refused = [e for e in events.errors if isinstance(e, InvalidTokenError)]
        assert len(refused) == 1
        assert str(refused[0]) == "Invalid token: expired"
        assert refused[0].type == "server-error"  # as PeerJS reports the broker's ERROR
        # The retries stopped: in five times reconnect_max, no further attempt.
        attempts = broker.refusals()
        assert attempts == 1
        await anyio.sleep(5 * QUICK.reconnect_max)
        assert broker.refusals() == attempts
        assert not peer.open
        # A new token: the peer registers again by itself, with that token.
        fresh = mint(peer_id, 600)
        peer.token = fresh
        await wait_for(lambda: peer.open, 10)
        assert peer.token == fresh
        assert events.opens == 1
        assert broker.broker is not None
        assert peer_id in broker.broker.realm


async def test_a_token_provider_is_asked_again_when_the_token_is_refused(
    broker: Restartable, peer_id: str
) -> None:
    """Peer(token=provider): registering, then after the broker refused the expired token,
    the provider gives a new one and auto_reconnect registers with it, with no error event."""
    minted: list[str] = []

    async def provider() -> str:
        minted.append(mint(peer_id, 2 if not minted else 600))
        return minted[-1]

    async with Peer(
        peer_id, server=broker.url, token=provider, auto_reconnect=True, timeouts=QUICK
    ) as peer:
        assert peer.token == minted[0]
        events = Events(peer)
        await outlive(minted[0], broker)
        await wait_for(lambda: peer.open, 10)
        assert len(minted) == 2
        assert peer.token == minted[1]
        assert broker.refusals() == 1
        assert not [e for e in events.errors if isinstance(e, InvalidTokenError)]


async def test_a_provider_whose_token_is_refused_ends_the_retries(
    broker: Restartable, peer_id: str
) -> None:
    """A provider that gives a token the broker refuses too: error event, retries stop."""
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return mint(peer_id, 2) if calls == 1 else mint("someone-else", 600)

    async with Peer(
        peer_id, server=broker.url, token=provider, auto_reconnect=True, timeouts=QUICK
    ) as peer:
        events = Events(peer)
        assert peer.token is not None
        await outlive(peer.token, broker)
        await wait_for(lambda: any(isinstance(e, InvalidTokenError) for e in events.errors), 10)
        assert "sub claim" in str(events.errors[-1])
        await anyio.sleep(5 * QUICK.reconnect_max)
        assert calls == 2
        assert broker.refusals() == 2
        assert not peer.open


async def test_a_refused_token_at_start_raises_invalid_token(
    broker: Restartable, peer_id: str
) -> None:
    """async with Peer(...) with an expired JWT raises InvalidTokenError (a ServerError)."""
    with pytest.raises(InvalidTokenError, match="Invalid token: expired"):
        async with Peer(peer_id, server=broker.url, token=mint(peer_id, -10)):
            pass


@contextlib.contextmanager
def threaded_jwt_broker() -> Iterator[str]:
    """The JWT broker on an event loop thread, for the blocking facade; yield its URL."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Broker(config(0))) as broker,
    ):
        yield broker.url


def test_the_sync_facade_takes_a_token_and_a_blocking_provider(peer_id: str) -> None:
    """peerpy.sync.Peer: a refused token raises; peer.token = ... then start() works;
    a plain (blocking) provider is asked on a worker thread."""
    on_loop: list[bool] = []

    def provider() -> str:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return mint(peer_id + "p", 600)

    with threaded_jwt_broker() as url:
        peer = sync.Peer(peer_id, server=url, token=mint(peer_id, -10))
        with pytest.raises(InvalidTokenError):
            peer.start()
        good = mint(peer_id, 600)
        peer.token = good
        with peer:
            assert peer.open
            assert peer.token == good
            newer = mint(peer_id, 900)
            peer.token = newer
            assert peer.token == newer
        with sync.Peer(peer_id + "p", server=url, token=provider) as other:
            assert other.open
            assert on_loop == [False]
