"""A browser peer and a Python peer on one broker; opening connections and calls between them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from aiortc import MediaStreamTrack

from peerpy import DataConnection, MediaConnection, Peer

from .browser import BrowserPage, CallInfo, ConnInfo

#: Bound for opening one connection, both sides.
OPEN_TIMEOUT = 20.0


def python_peer(peer_id: str | None, broker_url: str, backend: str = "aiortc") -> Peer:
    """A Python peer on ``broker_url`` that uses no ICE server and only 127.0.0.1.

    Explicit because module-scoped fixtures start before the autouse fixture
    that sets PEERPY_ICE_* (and PEERPY_BACKEND) for each test.
    """
    return Peer(
        peer_id,
        server=broker_url,
        ice_servers=[],
        ice_addresses=["127.0.0.1"],
        backend=backend,
    )


@dataclass
class Pair:
    """A browser peer and a Python peer registered on the same broker."""

    page: BrowserPage
    browser_id: str
    python: Peer
    broker_url: str

    @property
    def python_id(self) -> str:
        assert self.python.id is not None
        return self.python.id

    async def open(
        self,
        direction: str,
        *,
        label: str,
        serialization: str = "binary",
        reliable: bool = False,
        metadata: Any = None,
    ) -> tuple[DataConnection, ConnInfo]:
        """Open a data connection; ``direction`` says who calls connect().

        Returns the Python side and the page's view of its side, both open.
        """
        options: dict[str, Any] = {"label": label, "serialization": serialization}
        options["reliable"] = reliable
        if metadata is not None:
            options["metadata"] = metadata
        with anyio.fail_after(OPEN_TIMEOUT):
            if direction == "python-connects":
                conn = await self.python.connect(self.browser_id, **options)
                info = await self.page.accept("main", conn.connection_id)
                return conn, info
            assert direction == "browser-connects", direction
            result: list[ConnInfo] = []

            async def browser_side() -> None:
                result.append(await self.page.connect("main", self.python_id, **options))

            async with anyio.create_task_group() as tg:
                tg.start_soon(browser_side)
                conn = await self._accept(label)
            return conn, result[0]

    async def _accept(self, label: str) -> DataConnection:
        """The incoming connection labelled ``label``; strays are closed."""
        while True:
            conn = await self.python.accept()
            if conn.label == label:
                return conn
            await conn.close()

    async def call_browser(
        self,
        tracks: Sequence[MediaStreamTrack],
        *,
        send: bool = True,
        metadata: Any = None,
        receive: Sequence[str] = (),
    ) -> tuple[MediaConnection, CallInfo]:
        """Python calls the browser, which answers with its fake devices (or none).

        Returns Python's call once media flows and the page's view of its side.
        """
        before = set(map(id, self.python.connections))
        result: list[MediaConnection] = []

        async def dial() -> None:
            call = await self.python.call(
                self.browser_id, tracks, metadata=metadata, receive=receive
            )
            result.append(call)

        with anyio.fail_after(OPEN_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(dial)
                # call() returns only once answered: find its id among the new connections.
                while True:
                    new = [
                        c
                        for c in self.python.connections
                        if isinstance(c, MediaConnection) and id(c) not in before
                    ]
                    if new:
                        break
                    await anyio.sleep(0.01)
                info = await self.page.answer_call("main", new[0].connection_id, send=send)
        assert result[0] is new[0]
        return result[0], info

    async def browser_calls(self, *, metadata: Any = None) -> MediaConnection:
        """The browser calls Python with its fake devices; return Python's unanswered call."""
        options = {} if metadata is None else {"metadata": metadata}
        with anyio.fail_after(OPEN_TIMEOUT):
            connection_id = await self.page.call("main", self.python_id, **options)
            while True:
                call = await self.python.accept_call()
                if call.connection_id == connection_id:
                    return call
                await call.close()  # left over by a failed test
