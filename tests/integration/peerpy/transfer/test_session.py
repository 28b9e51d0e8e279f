"""A whole transfer session over real peers (sender, receiver, channel): round trips,
resume, attacks, a hostile broker, the data path off the event loop.

The pure pieces (protocol, codes, auth, safe names, options): tests/unit/peerpy/transfer.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from peerpy_protocol.ids import random_token
from peerpy_protocol.payloads import AnswerPayload, ConnectionType, OfferPayload, SessionDescription
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, serve

from peerpy.dataconnection import DataConnection
from peerpy.network import NetworkPolicy, create_peer_connection
from peerpy.transfer import (
    AuthenticationError,
    DiskFullError,
    IntegrityError,
    ManInTheMiddleError,
    NoSenderError,
    PeerVanishedError,
    StoppedError,
    TargetExistsError,
    TransferOptions,
    TransferProtocolError,
    UnsafePathError,
    build_manifest,
    receive_files,
    send_files,
)
from peerpy.transfer import files as files_module
from peerpy.transfer import receiver as receiver_module
from peerpy.transfer import sender as sender_module
from peerpy.transfer.auth import Code
from peerpy.transfer.channel import Channel, authenticate
from peerpy.transfer.files import PARTIAL_SUFFIX, STATE_SUFFIX, Target
from peerpy.transfer.options import IO_BLOCK, NullProgress
from peerpy.transfer.protocol import (
    MAX_CHUNK,
    Data,
    EntryKind,
    FileEntry,
    Offer,
)
from peerpy.transfer.receiver import receive_over
from peerpy.transfer.sender import send_over

from ....helpers.brokers import peerpy_server
from ....helpers.offers import offer_frame
from .support import (
    FAST,
    ConnectionCutter,
    both,
    offer_one_file,
    pair,
    round_trip_over,
    sha,
    transfer,
    tree_hashes,
)

# -- over real peers ------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    folder = root / "folder"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "empty").mkdir()
    (folder / "a.bin").write_bytes(os.urandom(300_000))
    (folder / "sub" / "b.txt").write_text("hello\n")
    (folder / "sub" / "deeper" / "zero").write_bytes(b"")
    (folder / "sub" / "link").symlink_to("/etc/passwd")
    return folder


@pytest.mark.anyio
async def test_folder_round_trip(broker_url: str, tmp_path: Path) -> None:
    """A folder tree arrives with identical hashes, empty dirs, no links, no leftovers."""
    folder = make_tree(tmp_path)
    single = tmp_path / "single.dat"
    single.write_bytes(os.urandom(50_000))
    out = tmp_path / "out"
    code = f"{secrets.randbelow(10**6) + 1000}-folder-trip"
    sent, got = await transfer(broker_url, [folder, single], out, code)
    assert not isinstance(sent, Exception), sent
    assert not isinstance(got, Exception), got
    expected = {k: v for k, v in tree_hashes(tmp_path).items() if not k.startswith("out")}
    expected = {k: v for k, v in expected.items() if "link" not in k}
    assert tree_hashes(out) == expected
    assert (out / "folder" / "empty").is_dir()
    assert not (out / "folder" / "sub" / "link").exists()
    assert not list(out.rglob("*.peerpy-*"))
    assert got.transferred_bytes == sent.transferred_bytes == 350_006


@pytest.mark.anyio
async def test_a_file_goes_over_each_backend_pair(
    tmp_path: Path, backends: tuple[str, str]
) -> None:
    """The code-authenticated handshake agrees whichever backend each side runs:
    aiortc advertises three DTLS fingerprints of its certificate and libwebrtc
    keeps one of them in its remote description, so the proof binds the
    certificates, not the SDP lines (``backends``: the receiver's, the sender's)."""
    (tmp_path / "f.bin").write_bytes(os.urandom(100_000))
    _, sources = build_manifest([tmp_path / "f.bin"])
    out = tmp_path / "out"
    sent, got = await round_trip_over(Code(15, ("o", "p")), sources, out, FAST, backends)
    assert sha(out / "f.bin") == sha(tmp_path / "f.bin")
    assert got.transferred_bytes == sent.transferred_bytes == 100_000


@pytest.mark.anyio
async def test_resume_after_sender_killed(tmp_path: Path) -> None:
    """A transfer cut mid-way resumes: the second run receives only the missing bytes."""
    source = tmp_path / "big.bin"
    size = 1_500_000
    source.write_bytes(os.urandom(size))
    out = tmp_path / "out"
    async with peerpy_server() as url:
        ready = anyio.Event()

        scope = anyio.CancelScope()

        class Killer(NullProgress):
            seen = 0

            def advance(self, nbytes: int) -> None:
                self.seen += nbytes
                if self.seen >= 600_000:
                    scope.cancel()  # the sender is stopped mid-way

        async def sender() -> None:
            with scope:
                await send_files(
                    [source], code="41-x-y", on_code=lambda c: ready.set(), progress=Killer(),
                    options=FAST, server=url,
                )  # fmt: skip

        async def receiver() -> Any:
            await ready.wait()
            return await receive_files("41-x-y", output=out, options=FAST, server=url)

        results = await both(sender, receiver)
        # Cancelling send_files is a deliberate stop: the receiver hears so.
        assert isinstance(results[1], StoppedError), results
        partial = out / ("big.bin" + PARTIAL_SUFFIX)
        kept = partial.stat().st_size
        assert 0 < kept < size
        assert not (out / "big.bin").exists()
        assert json.loads((out / ("big.bin" + STATE_SUFFIX)).read_text())["size"] == size

        sent, got = await transfer(url, [source], out, "42-x-y")
    assert not isinstance(got, Exception), got
    assert got.resumed_bytes == kept
    assert got.transferred_bytes == sent.transferred_bytes == size - kept
    assert sha(out / "big.bin") == sha(source)
    assert not partial.exists()


@pytest.mark.anyio
async def test_lost_connection_reconnects_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection cut after auth reconnects under the same code; verified files are kept."""
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "a.small").write_bytes(os.urandom(20_000))
    (folder / "b.big").write_bytes(os.urandom(800_000))
    out = tmp_path / "out"
    cutter = ConnectionCutter(300_000).install(monkeypatch)
    async with peerpy_server() as url:
        sent, got = await transfer(url, [folder], out, "48-x-y", progress=cutter)
    assert not isinstance(got, Exception), got
    assert not isinstance(sent, Exception), sent
    assert len(cutter.conns) == 2
    assert tree_hashes(out / "two") == tree_hashes(folder)
    assert 0 < got.transferred_bytes < 800_000  # the second connection sent only the rest
    assert got.resumed_bytes == 820_000 - got.transferred_bytes


@pytest.mark.anyio
async def test_resume_with_changed_prefix_restarts(tmp_path: Path) -> None:
    """A partial copy whose prefix hash differs from the sender's file is resent whole."""
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(200_000))
    out = tmp_path / "out"
    out.mkdir()
    entry = build_manifest([source])[0].entries[0]
    (out / ("f.bin" + PARTIAL_SUFFIX)).write_bytes(b"\xff" * 50_000)  # wrong bytes
    (out / ("f.bin" + STATE_SUFFIX)).write_text(
        json.dumps({"v": 1, "path": "f.bin", "size": entry.size, "mtime": entry.mtime})
    )
    async with peerpy_server() as url:
        _, got = await transfer(url, [source], out, "43-x-y")
    assert not isinstance(got, Exception), got
    assert got.transferred_bytes == 200_000
    assert sha(out / "f.bin") == sha(source)


@pytest.mark.anyio
async def test_corrupted_chunk_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flipped bit in one chunk fails the SHA-256 check; no file poses as complete."""
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(100_000))
    _, sources = build_manifest([source])
    code = Code(5, ("c", "d"))
    async with peerpy_server() as url, pair(url) as (s, r):
        original = s.send
        count = 0

        async def corrupting(value: Any) -> None:
            nonlocal count
            if isinstance(value, bytes) and value[:1] == b"D":  # a data frame
                count += 1
                if count == 3:
                    value = value[:-1] + bytes([value[-1] ^ 1])
            await original(value)

        monkeypatch.setattr(s, "send", corrupting)
        sent, got = await both(
            lambda: send_over(s, code, sources, options=FAST),
            lambda: receive_over(r, code, Target(tmp_path / "out"), options=FAST),
        )
    assert isinstance(got, IntegrityError), got
    assert isinstance(sent, IntegrityError), sent
    assert not (tmp_path / "out" / "f.bin").exists()
    assert not (tmp_path / "out" / ("f.bin" + PARTIAL_SUFFIX)).exists()


@pytest.mark.anyio
async def test_wrong_code_refused(tmp_path: Path) -> None:
    """Different codes on the two sides: both refuse before any file byte."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"secret")
    _, sources = build_manifest([source])
    async with peerpy_server() as url, pair(url) as (s, r):
        sent, got = await both(
            lambda: send_over(s, Code(5, ("a", "b")), sources, options=FAST),
            lambda: receive_over(r, Code(5, ("a", "c")), Target(tmp_path / "out"), options=FAST),
        )
    assert isinstance(sent, AuthenticationError)
    assert isinstance(got, AuthenticationError)
    assert "wrong code" in str(sent)
    assert "wrong code" in str(got)
    assert not (tmp_path / "out").exists()


@pytest.mark.anyio
async def test_traversal_offer_refused(tmp_path: Path) -> None:
    """An authenticated but hostile sender offering '../evil' gets refused; nothing written."""
    code = Code(6, ("e", "f"))
    out = tmp_path / "out"

    async def hostile(s: DataConnection) -> None:
        ch = Channel(s, FAST)
        await authenticate(ch, code, "sender")
        await ch.send(Offer((FileEntry("../evil", EntryKind.FILE, 4),)))
        await ch.expect(Data)  # waits for the receiver's refusal

    async with peerpy_server() as url, pair(url) as (s, r):
        sent, got = await both(
            lambda: hostile(s), lambda: receive_over(r, code, Target(out), options=FAST)
        )
    assert isinstance(got, UnsafePathError), got
    assert isinstance(sent, UnsafePathError), sent
    assert not (tmp_path / "evil").exists()


@pytest.mark.anyio
async def test_existing_files_refused_or_renamed(tmp_path: Path) -> None:
    """An existing file is never silently replaced: refuse by default, rename on request."""
    source = tmp_path / "f.txt"
    source.write_text("new")
    out = tmp_path / "out"
    out.mkdir()
    (out / "f.txt").write_text("old")
    async with peerpy_server() as url:
        sent, got = await transfer(url, [source], out, "44-x-y")
        assert isinstance(got, TargetExistsError), got
        assert isinstance(sent, TargetExistsError), sent
        assert (out / "f.txt").read_text() == "old"
        _, got = await transfer(url, [source], out, "45-x-y", conflict="rename")
        assert not isinstance(got, Exception), got
    assert (out / "f.txt").read_text() == "old"
    assert (out / "f (1).txt").read_text() == "new"


@pytest.mark.anyio
async def test_disk_full_keeps_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing gives DiskFullError on both sides and keeps only the partial."""
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(200_000))
    out = tmp_path / "out"
    real_write = os.write
    written = 0

    def filling(fd: int, data: Any) -> int:
        nonlocal written
        if written > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(files_module.os, "write", filling)
    async with peerpy_server() as url:
        sent, got = await transfer(url, [source], out, "46-x-y")
    assert isinstance(got, DiskFullError), got
    assert "resume" in str(got)
    assert isinstance(sent, DiskFullError), sent
    assert not (out / "f.bin").exists()
    assert (out / ("f.bin" + PARTIAL_SUFFIX)).stat().st_size > 0


@pytest.mark.anyio
async def test_no_sender_for_code(tmp_path: Path) -> None:
    """A code nobody serves gives NoSenderError, not a hang."""
    async with peerpy_server(expire_timeout=0.5) as url:
        with anyio.fail_after(20), pytest.raises(NoSenderError):
            await receive_files("999-no-one", output=tmp_path, server=url)


# -- a hostile broker -------------------------------------------------------------


def _loopback_pc() -> RTCPeerConnection:
    return create_peer_connection(RTCConfiguration(iceServers=[]), NetworkPolicy.loopback())


@attrs.define
class MitmProxy:
    """A signaling proxy that terminates every data connection's DTLS itself.

    Each OFFER is answered by the proxy's own peer connection, and the proxy
    sends its own OFFER to the callee; data-channel messages are relayed
    between the two legs untouched, so the PAKE messages get through.
    """

    upstream: str
    pcs: list[RTCPeerConnection] = attrs.Factory(list)
    hijacked: dict[str, RTCPeerConnection] = attrs.Factory(dict)
    relayed: int = 0

    async def handler(self, client: ServerConnection) -> None:
        assert client.request is not None
        me = client.request.path.split("id=")[1].split("&")[0]
        async with (
            ws_connect(self.upstream + client.request.path.lstrip("/")) as up,
            anyio.create_task_group() as tg,
        ):

            async def down() -> None:
                async for raw in up:
                    msg = json.loads(raw)
                    cid = (msg.get("payload") or {}).get("connectionId")
                    if msg.get("type") == "ANSWER" and cid in self.hijacked:
                        sdp = msg["payload"]["sdp"]
                        await self.hijacked[cid].setRemoteDescription(
                            RTCSessionDescription(sdp["sdp"], sdp["type"])
                        )
                    elif msg.get("type") != "CANDIDATE":
                        await client.send(raw)
                tg.cancel_scope.cancel()

            tg.start_soon(down)
            async for raw in client:
                msg = json.loads(raw)
                if msg.get("type") == "OFFER":
                    await self.hijack(msg, me, client, up)
                elif msg.get("type") != "CANDIDATE":
                    await up.send(raw)
            tg.cancel_scope.cancel()

    async def hijack(self, msg: dict[str, Any], me: str, client: Any, up: Any) -> None:
        offer = OfferPayload.from_json(msg["payload"])
        leg_a, leg_b = _loopback_pc(), _loopback_pc()
        self.pcs += [leg_a, leg_b]
        channel_b = leg_b.createDataChannel(offer.label or "", ordered=bool(offer.reliable))
        self._bridge(leg_a, channel_b)
        await leg_a.setRemoteDescription(RTCSessionDescription(offer.sdp.sdp, "offer"))
        await leg_a.setLocalDescription(await leg_a.createAnswer())
        answer = AnswerPayload(
            SessionDescription("answer", leg_a.localDescription.sdp),
            ConnectionType.DATA,
            offer.connection_id,
        )
        await client.send(
            json.dumps(
                {"type": "ANSWER", "src": msg["dst"], "dst": me, "payload": answer.to_json()}
            )
        )
        await leg_b.setLocalDescription(await leg_b.createOffer())
        # Our legs speak no resumption: the forged OFFER does not offer it either.
        forged = attrs.evolve(
            offer, sdp=SessionDescription("offer", leg_b.localDescription.sdp), resume=None
        )
        self.hijacked[offer.connection_id] = leg_b
        await up.send(offer_frame(msg["dst"], forged))

    def _bridge(self, leg_a: RTCPeerConnection, channel_b: RTCDataChannel) -> None:
        pending: dict[int, list[Any]] = {id(channel_b): []}

        def relay(target: RTCDataChannel, message: Any) -> None:
            self.relayed += 1
            if target.readyState == "open":
                target.send(message)
            else:
                pending.setdefault(id(target), []).append(message)

        def flush(channel: RTCDataChannel) -> None:
            for message in pending.pop(id(channel), []):
                channel.send(message)

        def on_channel(channel_a: RTCDataChannel) -> None:
            channel_a.on("message", lambda m: relay(channel_b, m))
            channel_b.on("message", lambda m: relay(channel_a, m))
            channel_b.on("open", lambda: flush(channel_b))
            if channel_a.readyState == "open":
                flush(channel_a)

        leg_a.on("datachannel", on_channel)

    async def aclose(self) -> None:
        for pc in self.pcs:
            await pc.close()


@pytest.mark.anyio
async def test_man_in_the_middle_broker_refused(tmp_path: Path) -> None:
    """A broker that terminates DTLS on both sides is caught by the fingerprint MACs."""
    source = tmp_path / "secret.txt"
    source.write_text("top secret")
    out = tmp_path / "out"
    async with peerpy_server(path="/") as real:
        proxy = MitmProxy("ws" + real[4:])

        def process_request(connection: ServerConnection, request: Any) -> Any:
            if request.path.startswith("/peerjs/id"):
                return connection.respond(200, "mitmvictim" + random_token())
            return None

        try:
            async with serve(proxy.handler, "127.0.0.1", 0, process_request=process_request) as srv:
                port = srv.sockets[0].getsockname()[1]
                with anyio.fail_after(40):
                    sent, got = await transfer(f"http://127.0.0.1:{port}/", [source], out, "47-x-y")
        finally:
            await proxy.aclose()
    assert proxy.hijacked, "the proxy did not sit in the middle"
    assert proxy.relayed >= 2
    assert isinstance(got, ManInTheMiddleError), got
    assert isinstance(sent, ManInTheMiddleError), sent
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.anyio
async def test_non_contiguous_data_refused_partial_stays_a_prefix(tmp_path: Path) -> None:
    """Data at any offset but the next one is a protocol error; the partial file
    holds only the contiguous prefix."""
    code = Code(11, ("g", "h"))
    out = tmp_path / "out"
    first = os.urandom(1000)

    async def hostile(s: DataConnection) -> None:
        ch = await offer_one_file(s, code, 100_000)
        await ch.send(Data(0, first))
        await ch.send(Data(5000, b"z" * 1000))  # a gap
        await ch.expect(Data)  # waits for the receiver's refusal

    async with peerpy_server() as url, pair(url) as (s, r):
        sent, got = await both(
            lambda: hostile(s), lambda: receive_over(r, code, Target(out), options=FAST)
        )
    assert isinstance(got, TransferProtocolError), got
    assert "not contiguous" in str(got)
    assert isinstance(sent, TransferProtocolError), sent
    assert (out / ("f.bin" + PARTIAL_SUFFIX)).read_bytes() == first


@pytest.mark.anyio
async def test_heartbeats_keep_a_slow_decision_alive(tmp_path: Path) -> None:
    """A person taking longer than idle_timeout to accept does not look like a dead
    peer: heartbeats flow both ways while they think."""
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(50_000))
    _, sources = build_manifest([source])
    code = Code(12, ("i", "j"))
    quick = attrs.evolve(FAST, idle_timeout=1.0, heartbeat_interval=0.2)

    async def slow_yes(offer: Offer, already: int) -> bool:
        await anyio.sleep(3)
        return True

    await round_trip_over(code, sources, tmp_path / "out", quick, confirm=slow_yes)
    assert sha(tmp_path / "out" / "f.bin") == sha(source)


@pytest.mark.anyio
async def test_silent_sender_reported_within_idle_timeout(tmp_path: Path) -> None:
    """A sender that stops sending anything (no heartbeats either) is reported as
    gone after idle_timeout, not after the connection's own timeouts."""
    code = Code(13, ("k", "l"))
    quick = attrs.evolve(FAST, idle_timeout=1.5, heartbeat_interval=0.3)
    elapsed: list[float] = []

    async def frozen(s: DataConnection) -> None:
        ch = Channel(s, quick)
        await authenticate(ch, code, "sender")
        await ch.send(Offer((FileEntry("f.bin", EntryKind.FILE, 10),)))
        # Alive, but silent (no data, no heartbeat) until the receiver gave up.
        with anyio.move_on_after(8):
            while not elapsed:  # noqa: ASYNC110 - the receiver's verdict is a list
                await anyio.sleep(0.05)

    async with peerpy_server() as url, pair(url) as (s, r):

        async def receiver() -> Any:
            started = anyio.current_time()
            try:
                return await receive_over(r, code, Target(tmp_path / "out"), options=quick)
            finally:
                elapsed.append(anyio.current_time() - started)

        with anyio.fail_after(20):
            _, got = await both(lambda: frozen(s), receiver)
    assert isinstance(got, PeerVanishedError), got
    assert "sent nothing for 1.5 s" in str(got)
    assert got.after_auth
    assert elapsed[0] < 6  # handshake, then 1.5 s of silence


# -- the data path: file I/O and hashing off the event loop --------------------------


@pytest.mark.anyio
async def test_odd_sizes_round_trip_with_default_chunks(tmp_path: Path) -> None:
    """Files around the chunk and I/O block sizes arrive whole, hashed in blocks."""
    folder = tmp_path / "odd"
    folder.mkdir()
    sizes = [0, 1, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1, IO_BLOCK, IO_BLOCK + 12_345]
    for size in sizes:
        (folder / f"f{size}.bin").write_bytes(os.urandom(size))
    _, sources = build_manifest([folder])
    options = TransferOptions(idle_timeout=10)  # default chunk size, window and acks
    code = Code(14, ("m", "n"))
    sent, got = await round_trip_over(code, sources, tmp_path / "out", options)
    assert tree_hashes(tmp_path / "out" / "odd") == tree_hashes(folder)
    assert got.transferred_bytes == sent.transferred_bytes == sum(sizes)


@pytest.mark.anyio
async def test_file_io_and_hashing_run_in_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender reads and hashes, the receiver writes, in blocks of IO_BLOCK bytes,
    and hashes the finished file, in worker threads, never on the event loop's thread."""
    source = tmp_path / "f.bin"
    size = 2 * IO_BLOCK + 777
    source.write_bytes(os.urandom(size))
    _, sources = build_manifest([source])
    loop_thread = threading.get_ident()
    reads: list[tuple[int, int]] = []
    writes: list[tuple[int, int]] = []
    digests: list[int] = []
    real_read, real_write = sender_module._read_hashed, receiver_module._write_blocks
    real_digest = files_module.PartialFile.digest

    def read(f: Any, hasher: Any, nbytes: int) -> bytes:
        reads.append((threading.get_ident(), nbytes))
        return real_read(f, hasher, nbytes)

    def write(partial: Any, blocks: list[Any]) -> None:
        writes.append((threading.get_ident(), sum(len(b) for b in blocks)))
        real_write(partial, blocks)

    def digest(partial: files_module.PartialFile) -> bytes:
        digests.append(threading.get_ident())
        return real_digest(partial)

    monkeypatch.setattr(sender_module, "_read_hashed", read)
    monkeypatch.setattr(receiver_module, "_write_blocks", write)
    monkeypatch.setattr(files_module.PartialFile, "digest", digest)
    options = TransferOptions(idle_timeout=10)
    code = Code(15, ("o", "p"))
    await round_trip_over(code, sources, tmp_path / "out", options)
    assert sha(tmp_path / "out" / "f.bin") == sha(source)
    block = IO_BLOCK // MAX_CHUNK * MAX_CHUNK  # whole chunks per block
    assert [n for _, n in reads] == [block, block, size - 2 * block]
    assert sum(n for _, n in writes) == size
    assert all(n <= IO_BLOCK + MAX_CHUNK for _, n in writes)
    assert len(writes) <= 4  # blocks, not one call per chunk
    assert len(digests) == 1
    assert all(thread != loop_thread for thread in [t for t, _ in reads + writes] + digests)


@pytest.mark.anyio
async def test_a_slow_disk_does_not_look_like_a_dead_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that blocks for longer than idle_timeout stalls only the worker
    thread: heartbeats keep flowing and the transfer completes."""
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(600_000))
    out = tmp_path / "out"
    real_write = os.write
    stalled: list[float] = []

    def slow(fd: int, data: Any) -> int:
        if not stalled and os.fstat(fd).st_size > 200_000:
            stalled.append(1.0)
            time.sleep(2.0)  # a disk stuck for twice idle_timeout
        return real_write(fd, data)

    monkeypatch.setattr(files_module.os, "write", slow)
    _, sources = build_manifest([source])
    quick = attrs.evolve(FAST, idle_timeout=1.0, heartbeat_interval=0.2)
    code = Code(16, ("q", "r"))
    await round_trip_over(code, sources, out, quick)
    assert stalled
    assert sha(out / "f.bin") == sha(source)
