"""A browser peer and a Python peer on one broker, and opening connections between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from peerpy import DataConnection, Peer

from .browser import BrowserPage, ConnInfo

#: Bound for opening one connection, both sides.
OPEN_TIMEOUT = 20.0


def python_peer(peer_id: str | None, broker_url: str) -> Peer:
    """A Python peer on ``broker_url`` that uses no ICE server and only 127.0.0.1.

    Explicit because module-scoped fixtures start before the autouse fixture
    that sets PEERPY_ICE_* for each test.
    """
    return Peer(peer_id, server=broker_url, ice_servers=[], ice_addresses=["127.0.0.1"])


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
