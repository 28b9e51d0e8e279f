"""The peer's registration with the broker, supervised: loss, reconnection, failover, token.

A :class:`BrokerSession` runs the :class:`~peerpy.signaling.Signaling`
sessions of one :class:`~peerpy.peer.Peer`, one after the other:

- :meth:`BrokerSession.register` opens one and returns once the broker said
  OPEN, with the current token.  If the broker refuses the token
  (:class:`~peerpy.exceptions.InvalidTokenError`, e.g. an expired JWT) and the
  token came from a provider (``Peer(token=callable)``), the provider is asked
  for a new one and the registration tried once more.
- However a session ends that we did not close ourselves, the outgoing
  connections still waiting for an ANSWER fail, the peer emits ``error`` then
  ``disconnected``, and with ``auto_reconnect`` it registers again, backing
  off with jitter (:func:`~peerpy.backoff.backoff_delays`) and moving to the
  next broker of a cluster (``server=[...]``) on each attempt.  The retries
  stop when registered, on ``disconnect()``/``destroy()``, and on a refusal
  that retrying cannot fix: the id taken by someone else
  (:class:`~peerpy.exceptions.UnavailableIdError`) or the token refused
  (:class:`~peerpy.exceptions.InvalidTokenError`), each reported as an
  ``error`` event.  After a token refusal, setting ``peer.token`` starts the
  retries again.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import anyio
import anyio.abc
import attrs
from aiortc import RTCIceServer

from .backoff import backoff_delays
from .config import ServerAddress, Timeouts
from .events import EventEmitter
from .exceptions import (
    DisconnectedError,
    InvalidTokenError,
    NetworkError,
    PeerError,
    UnavailableIdError,
    UsageError,
)
from .pathloss import resume_lost_paths
from .registry import Registry
from .signaling import RelayHandler, Signaling

__all__ = ["BrokerSession", "Host", "TokenProvider"]

#: ``Peer(token=...)`` as a callable: returns a token (or an awaitable of one),
#: asked before the first registration and whenever the broker refuses the token.
TokenProvider = Callable[[], "str | Awaitable[str]"]


class Host(Protocol):
    """What the session needs from its :class:`~peerpy.peer.Peer`."""

    @property
    def id(self) -> str | None: ...
    @property
    def destroyed(self) -> bool: ...
    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None: ...


@attrs.define(eq=False)
class BrokerSession:
    """The broker sessions of one peer (see the module docstring).

    Made as ``BrokerSession(host, servers, on_relay, token=..., timeouts=...,
    ssl_context=..., events=..., registry=..., auto_reconnect=..., logger=...)``;
    ``token`` is a string or a :data:`TokenProvider`.
    """

    _host: Host
    _servers: Sequence[ServerAddress]
    _on_relay: RelayHandler
    _given_token: str | TokenProvider = attrs.field(kw_only=True, alias="token")
    _timeouts: Timeouts = attrs.field(kw_only=True)
    _ssl_context: ssl.SSLContext | None = attrs.field(kw_only=True)
    _events: EventEmitter = attrs.field(kw_only=True)
    _registry: Registry = attrs.field(kw_only=True)
    _auto_reconnect: bool = attrs.field(kw_only=True)
    _log: logging.Logger = attrs.field(kw_only=True, alias="logger")
    #: The signaling client; its ``address`` is the broker in use.
    signaling: Signaling = attrs.field(init=False)
    _provider: TokenProvider | None = attrs.field(init=False)
    _token: str | None = attrs.field(init=False)
    open: bool = attrs.field(init=False, default=False)
    # Set while we close the broker session ourselves (disconnect, destroy).
    _leaving: bool = attrs.field(init=False, default=False)
    _token_refused: bool = attrs.field(init=False, default=False)  # auto_reconnect gave up
    _tg: anyio.abc.TaskGroup | None = attrs.field(init=False, default=None)  # once registered

    @signaling.default
    def _first_signaling(self) -> Signaling:
        return Signaling(
            self._servers[0],
            timeouts=self._timeouts,
            ssl_context=self._ssl_context,
            logger=self._log,
        )

    @_provider.default
    def _given_provider(self) -> TokenProvider | None:
        return self._given_token if callable(self._given_token) else None

    @_token.default
    def _given_string(self) -> str | None:
        return None if callable(self._given_token) else self._given_token

    @property
    def token(self) -> str | None:
        """The token of the next registration (``None`` until a provider gave one)."""
        return self._token

    @token.setter
    def token(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise UsageError(f"a token is a non-empty str, not {value!r:.40}")
        self._token = value
        if self._token_refused and not self.open and not self._host.destroyed:
            self._token_refused = False  # auto_reconnect stopped on the old token: go on
            self._host._spawn(self._reconnect_until_open)

    async def register(self, tg: anyio.abc.TaskGroup) -> None:
        """Start a session in ``tg``; return once the broker said OPEN.

        Raise what :meth:`Signaling.run` raises before OPEN (a refused token
        after the provider, if any, was asked for a new one).  Cancelling
        abandons the attempt.
        """
        self._tg = tg
        fresh = self._token is None
        if self._token is None:
            self._token = await self._new_token()
        try:
            await tg.start(self._run)
        except InvalidTokenError as exc:
            if self._provider is None or fresh:
                raise
            self._log.info("the broker refused our token (%s): asking for a new one", exc)
            self._token = await self._new_token()
            await tg.start(self._run)

    async def _new_token(self) -> str:
        """Ask the provider for a token; its failure is an InvalidTokenError."""
        assert self._provider is not None
        try:
            token = self._provider()
            if inspect.isawaitable(token):
                token = await token
        except Exception as exc:
            raise InvalidTokenError(f"the token provider failed: {exc!r}") from exc
        if not isinstance(token, str) or not token:
            raise InvalidTokenError(f"the token provider returned {token!r:.40}, not a token")
        return token

    async def reconnect(self) -> None:
        """Register again (``peer.reconnect()``), then emit ``open``.

        Raise :class:`DisconnectedError` if the peer is destroyed and
        :class:`UsageError` if it is connected.  Cancelling abandons the attempt.
        """
        if self._host.destroyed or self._tg is None:
            raise DisconnectedError(
                "This peer cannot reconnect to the server. It has already been destroyed."
            )
        if self.open:
            raise UsageError(
                f"Peer {self._host.id} cannot reconnect because it is not disconnected "
                "from the server!"
            )
        await self.register(self._tg)
        self._registry.registered_again()  # resuming connections need not wait their backoff
        self._events.emit("open", self._host.id)

    async def disconnect(self) -> None:
        """Close the session on purpose (``peer.disconnect()``).  Not cancellable."""
        if not self.open:
            return
        await self.leave()
        self._registry.fail_pending(DisconnectedError("disconnected from the broker"))
        self._events.emit("disconnected", self._host.id)

    async def ice_servers(self) -> list[RTCIceServer]:
        """What the broker offers this registered peer.  Cancelling abandons the request."""
        assert self._host.id is not None
        return await self.signaling.fetch_ice_servers(self._host.id, self._token or "")

    async def leave(self) -> None:
        """Close the current session ourselves: no ``error``, no reconnection.  Not cancellable."""
        self._leaving = True
        try:
            await self.signaling.aclose()
        finally:
            self._leaving = False

    async def _run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one broker session; report its end unless we closed it ourselves."""
        peer_id, token = self._host.id, self._token
        assert peer_id is not None
        assert token is not None
        registered = False

        def opened(value: None = None) -> None:
            nonlocal registered
            registered = self.open = True
            task_status.started()

        status = _Status(opened)
        reason: PeerError = NetworkError("Lost connection to server.")
        try:
            await self.signaling.run(peer_id, token, self._on_relay, task_status=status)
        except PeerError as exc:
            if not registered:
                raise
            reason = exc
        except Exception as exc:
            # Signaling turns every way a socket ends into NetworkError; should
            # anything else slip through, it must still not end the peer.
            self._log.exception("the broker session failed")
            error = NetworkError(f"the broker session failed: {type(exc).__name__}: {exc}")
            if not registered:
                raise error from exc
            reason = error
        finally:
            self.open = False
        if self._leaving or self._host.destroyed:
            return
        self._log.warning("lost the broker session: %s", reason)
        self._registry.fail_pending(NetworkError(f"lost the broker session: {reason}"))
        resume_lost_paths(self._registry)  # our address may be gone: resume those paths now
        self._events.emit("error", reason)
        self._events.emit("disconnected", peer_id)
        if self._auto_reconnect:
            self._host._spawn(self._reconnect_until_open)

    async def _reconnect_until_open(self) -> None:
        """Register again after a lost session, backing off with jitter.

        Waits :func:`~peerpy.backoff.backoff_delays` between attempts
        (``Timeouts.reconnect_initial`` doubling up to ``reconnect_max``).
        Stops when registered, when the peer is destroyed or disconnected on
        purpose, or when the id is taken or the token refused meanwhile.
        Cancelling stops the attempts.
        """
        delays = backoff_delays(self._timeouts.reconnect_initial, self._timeouts.reconnect_max)
        while not (self.open or self._host.destroyed or self._leaving):
            await anyio.sleep(next(delays))
            if self.open or self._host.destroyed or self._leaving:
                return
            servers = self._servers
            if len(servers) > 1:  # this broker may be gone: try the next one
                index = (servers.index(self.signaling.address) + 1) % len(servers)
                self.signaling.address = servers[index]
            try:
                await self.reconnect()
            except UnavailableIdError as exc:
                self._log.warning("cannot reclaim %r: %s", self._host.id, exc)
                self._events.emit("error", exc)
                return
            except InvalidTokenError as exc:
                self._log.warning(
                    "the broker refused the token of %r: %s; not retrying until peer.token is set",
                    self._host.id,
                    exc,
                )
                self._token_refused = True
                self._events.emit("error", exc)
                return
            except UsageError:  # reconnected (or destroyed) by someone else meanwhile
                return
            except PeerError as exc:  # NetworkError, ServerError: the broker is not back yet
                self._log.info("could not register again (will retry): %s", exc)


class _Status:
    """A task status that runs a callback when the task reports it started."""

    def __init__(self, callback: Callable[[None], None]) -> None:
        self._callback = callback

    def started(self, value: None = None) -> None:
        self._callback(value)
