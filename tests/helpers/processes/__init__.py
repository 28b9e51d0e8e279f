"""Real processes for the fault tests: a killable broker process, a resetting proxy, peer processes.

The scripts those children run sit beside this module: ``broker_peer_process.py``
(an echoing peer with ``auto_reconnect``), ``deadpeer_process.py`` (the remote
that tests/faults/test_peer.py kills or freezes), ``deadpeer_measure.py``
(the by-hand measurement behind its bounds) and ``call_member_process.py`` (a
member of a room call, many of which tests/integration/sfu/test_call_of_eight.py
runs and kills one of).

Everything listens on 127.0.0.1 only, and every process started here is
stopped by its PID.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from ..brokers import free_port
from ..brokers import wait_listening as blocking_wait_listening


async def wait_listening(port: int, within: float = 15.0) -> None:
    """Wait (without blocking the event loop) until 127.0.0.1:port accepts connections."""
    with anyio.fail_after(within):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return


class BrokerProcess:
    """``peerpy-server`` in a subprocess on one loopback port, to SIGKILL and restart.

    The child inherits the environment, so PYTHONPATH picks the broker under test.
    """

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _launch(self) -> None:
        assert self.process is None or self.process.poll() is not None
        args = [sys.executable, "-m", "peerpy_server.cli", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--log-level", "WARNING", *self.extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def start(self) -> None:
        """Start the broker and wait until it listens."""
        self._launch()
        await wait_listening(self.port)

    def start_blocking(self) -> None:
        """:meth:`start` for code without an event loop (the sync facade's tests)."""
        self._launch()
        blocking_wait_listening(self.port)

    def kill(self) -> None:
        """SIGKILL the broker (no close frames, as an OOM kill) and reap it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the broker if it runs (SIGKILL, by PID)."""
        if self.process is not None and self.process.poll() is None:
            self.kill()


@contextlib.asynccontextmanager
async def broker_process(*extra: str) -> AsyncIterator[BrokerProcess]:
    """A started :class:`BrokerProcess`, killed on exit whatever happened."""
    broker = BrokerProcess(*extra)
    try:
        await broker.start()
        yield broker
    finally:
        broker.stop()


def _linger_zero(stream: anyio.abc.SocketStream) -> None:
    """Make closing ``stream`` send RST instead of FIN."""
    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class ResettingProxy:
    """A TCP proxy on 127.0.0.1 that can reset every connection through it.

    :meth:`reset` closes both sides of each proxied connection with SO_LINGER 0,
    so the client and the broker each get an RST, as from a NAT or proxy that
    dropped the flow.  The proxy keeps listening, so clients can come back.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.resets = 0
        self._pairs: set[tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(SocketAttribute.local_port)
        async with listener:
            task_status.started()
            await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", self.target_port)
            except OSError:
                return
            pair = (client, upstream)
            self._pairs.add(pair)
            try:
                async with upstream, anyio.create_task_group() as tg:
                    tg.start_soon(self._pipe, client, upstream, tg.cancel_scope)
                    tg.start_soon(self._pipe, upstream, client, tg.cancel_scope)
            finally:
                self._pairs.discard(pair)

    @staticmethod
    async def _pipe(
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            scope.cancel()

    async def reset(self) -> int:
        """Reset every proxied connection (RST both ways); return how many."""
        pairs = list(self._pairs)
        for client, upstream in pairs:
            _linger_zero(client)
            _linger_zero(upstream)
            await client.aclose()
            await upstream.aclose()
        self.resets += len(pairs)
        return len(pairs)


@contextlib.asynccontextmanager
async def resetting_proxy(target_port: int) -> AsyncIterator[ResettingProxy]:
    """A running :class:`ResettingProxy` to 127.0.0.1:target_port."""
    proxy = ResettingProxy(target_port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()


PEER_SCRIPT = Path(__file__).with_name("broker_peer_process.py")


class PeerProcess:
    """``broker_peer_process.py`` in a subprocess: an echoing peer to SIGSTOP.

    Its stdout lines are collected by :meth:`read_lines` (run it in a task
    group); :meth:`wait_line` waits for a line starting with some words.
    """

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = anyio.Event()

    async def read_lines(self) -> None:
        assert self.process.stdout is not None
        buffered = BufferedByteReceiveStream(self.process.stdout)
        while True:
            try:
                line = await buffered.receive_until(b"\n", 65536)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
                break
            self.lines.append(line.decode(errors="replace"))
            self._changed.set()
            self._changed = anyio.Event()
        self._changed.set()

    async def wait_line(self, prefix: str, *, start: int = 0, within: float = 15.0) -> int:
        """Index of the first line from ``start`` on that starts with ``prefix``."""
        with anyio.fail_after(within):
            while True:
                for index in range(start, len(self.lines)):
                    if self.lines[index].startswith(prefix):
                        return index
                if self.process.returncode is not None:
                    raise AssertionError(f"peer process exited; it said {self.lines}")
                await self._changed.wait()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)


@contextlib.asynccontextmanager
async def peer_process(server: str, peer_id: str) -> AsyncIterator[PeerProcess]:
    """Start the peer process, collect its lines; SIGKILL it (by PID) on exit."""
    process = await anyio.open_process(
        [sys.executable, str(PEER_SCRIPT), server, peer_id], stderr=subprocess.DEVNULL
    )
    peer = PeerProcess(process)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.read_lines)
            try:
                yield peer
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGCONT)
                    process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
                tg.cancel_scope.cancel()
    finally:
        await process.aclose()
