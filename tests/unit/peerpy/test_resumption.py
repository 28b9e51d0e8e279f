"""peerpy.resumption: sequence numbers, acknowledgements, the bounded tail, duplicate drop.

Pure: two Resumption objects exchange envelopes by hand, losing some as a dead
peer connection would, then replay the tail as a new generation does.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest
from peerpy_protocol.payloads import (
    AnswerPayload,
    ConnectionType,
    OfferPayload,
    Resume,
    SessionDescription,
)

from peerpy.config import Timeouts
from peerpy.dataconnection import DataConnection
from peerpy.events import EventEmitter
from peerpy.exceptions import PeerError, ProtocolError
from peerpy.resumable import ResumableChannel
from peerpy.resumption import MAX_AHEAD, OVERHEAD, Resumption
from peerpy.sending import Sender


def pair(*, ordered: bool = True, window: int = 1 << 20) -> tuple[Resumption, Resumption]:
    return (
        Resumption(window=window, ordered=ordered, remote_window=window),
        Resumption(window=window, ordered=ordered, remote_window=window),
    )


def one(sender: Resumption, frame: bytes | str) -> bytes:
    """The single envelope of a frame that fits."""
    (wire,) = sender.wrap(frame)
    return wire


def deliver(receiver: Resumption, wires: list[bytes]) -> list[bytes | str]:
    frames = []
    for wire in wires:
        got = receiver.receive(wire)
        if got.frame is not None:
            frames.append(got.frame)
    return frames


def test_frames_round_trip_text_and_binary() -> None:
    """A frame comes out as sent: bytes as bytes, str as str."""
    a, b = pair()
    assert deliver(b, [one(a, b"\x00bin"), one(a, "tëxt")]) == [b"\x00bin", "tëxt"]
    assert b.received == 2


def test_the_tail_is_replayed_and_duplicates_dropped() -> None:
    """Messages lost with the path come again from the tail; those that had arrived are
    dropped: every message once, in order."""
    a, b = pair()
    wires = [one(a, f"m{n}") for n in range(10)]
    got = deliver(b, wires[:6])  # 6..9 lost with the peer connection
    a.receive(b.ack())  # acknowledges 0..5 ... but say this ack is lost too:
    a2, _ = pair()
    assert a.tail_length == 4
    # A new generation: the whole (unacknowledged) tail goes again.
    got += deliver(b, a.replay())
    assert got == [f"m{n}" for n in range(10)]
    # Had the ack been lost, the replay holds duplicates, which are dropped.
    wires = [one(a2, f"x{n}") for n in range(5)]
    c = Resumption(window=1 << 20, ordered=True)
    got = deliver(c, wires[:3]) + deliver(c, a2.replay())
    assert got == [f"x{n}" for n in range(5)]


def test_acknowledged_messages_leave_the_tail() -> None:
    """The tail holds only what the remote has not acknowledged; its bytes count envelopes."""
    a, b = pair()
    deliver(b, [one(a, b"x" * 100) for _ in range(3)])
    assert a.tail_bytes == 3 * (100 + OVERHEAD)
    assert a.receive(b.ack()).acked
    assert (a.tail_bytes, a.tail_length, a.replay()) == (0, 0, [])


def test_the_tail_is_bounded_by_the_window() -> None:
    """room_for refuses a message that would take the tail past the window (but never
    the first one, however large)."""
    a = Resumption(window=1000, ordered=True)
    assert a.room_for(5000)  # an empty tail takes one message of any size
    one(a, b"x" * 500)
    assert a.room_for(1000 - 500 - 2 * OVERHEAD)
    assert not a.room_for(1000 - 500 - 2 * OVERHEAD + 1)


def test_acks_come_every_quarter_of_the_remote_window() -> None:
    """The receiver acknowledges once a quarter of the sender's window arrived unacknowledged."""
    a = Resumption(window=4000, ordered=True)
    b = Resumption(window=4000, ordered=True, remote_window=4000)
    deliver(b, [one(a, b"x" * 400)])
    assert b.ack_pending
    assert not b.ack_due()
    deliver(b, [one(a, b"x" * 700)])
    assert b.ack_due()
    b.ack()
    assert not b.ack_pending
    assert not b.ack_due()


def test_unordered_channel_acknowledges_past_a_gap() -> None:
    """On an unordered channel a message may arrive past a gap: it is delivered at once,
    listed in the ack (so it leaves the tail), and a replay of it is dropped."""
    a, b = pair(ordered=False)
    wires = [one(a, f"u{n}") for n in range(5)]
    got = deliver(b, [wires[0], wires[3], wires[4]])
    a.receive(b.ack())
    assert [w[9:] for w in a.replay()] == [b"u1", b"u2"]
    got += deliver(b, [*a.replay(), wires[3]])
    assert sorted(got) == [f"u{n}" for n in range(5)]
    assert len(got) == 5
    assert b.received == 5


def test_ordered_channel_refuses_a_gap() -> None:
    """An ordered channel never skips a message: a gap is the remote misbehaving."""
    a, b = pair()
    wires = [one(a, "m") for _ in range(3)]
    deliver(b, wires[:1])
    with pytest.raises(ProtocolError):
        b.receive(wires[2])


def test_unordered_receiver_bounds_what_it_holds() -> None:
    """A remote sending far ahead of a gap is refused instead of growing memory."""
    a, b = pair(ordered=False)
    wires = [one(a, b"") for _ in range(MAX_AHEAD + 2)]
    deliver(b, wires[1 : MAX_AHEAD + 1])
    with pytest.raises(ProtocolError):
        b.receive(wires[MAX_AHEAD + 1])


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x01\x00",
        b"\x09",
        b"\x03" + bytes(8),
        b"\x03" + bytes(8) + b"\x00\x02",
        b"\x01" + bytes(8),
        b"\x02" + (1).to_bytes(8, "big") + b"\xff",
        "text without envelope",
    ],
)
def test_garbage_raises_protocol_error(wire: bytes | str) -> None:
    """Malformed envelopes raise ProtocolError only (sequence 0, bad UTF-8, short acks...)."""
    _, b = pair()
    with pytest.raises(ProtocolError):
        b.receive(wire)  # type: ignore[arg-type]


def test_an_ack_of_what_was_never_sent_is_refused() -> None:
    """A remote acknowledging messages we never sent is misbehaving."""
    a, b = pair()
    deliver(b, [one(Resumption(window=100, ordered=True), "x")])
    with pytest.raises(ProtocolError):
        a.receive(b.ack())


def test_bye() -> None:
    """The bye envelope says the remote closes on purpose."""
    _, b = pair()
    assert b.receive(Resumption.bye()).bye


def test_capability_round_trips_and_peerjs_sees_none() -> None:
    """peerpyResume rides in OFFER and ANSWER; an OFFER without it (PeerJS) has none and a
    payload without resume serializes exactly as before."""
    sdp = SessionDescription("offer", "v=0")
    offer = OfferPayload(sdp, ConnectionType.DATA, "dc_1", resume=Resume(2, 4096))
    assert OfferPayload.from_json(offer.to_json()).resume == Resume(2, 4096)
    plain = OfferPayload(sdp, ConnectionType.DATA, "dc_1").to_json()
    assert "peerpyResume" not in plain
    assert OfferPayload.from_json(plain).resume is None
    answer = AnswerPayload(sdp, ConnectionType.DATA, "dc_1", Resume(2, 0, refused=True))
    assert AnswerPayload.from_json(answer.to_json()).resume == Resume(2, 0, refused=True)
    assert set(AnswerPayload(sdp, ConnectionType.DATA, "dc_1").to_json()) == {
        "sdp",
        "type",
        "connectionId",
    }
    other_version = {**offer.to_json(), "peerpyResume": {**Resume(1, 1).to_json(), "version": 9}}
    assert OfferPayload.from_json(other_version).resume is None


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("frame", [b"\x01" * 65536, "é" * 40000])
def test_a_message_at_the_size_limit_goes_in_two_parts(ordered: bool, frame: bytes | str) -> None:
    """A message that fits the remote's max-message-size only without the envelope goes as
    two envelopes (two sequence numbers) and comes out whole, in either arrival order."""
    a, b = pair(ordered=ordered)
    wires = a.wrap(frame, 65536)
    assert len(wires) == 2
    assert all(len(w) <= 65536 for w in wires)
    arrival = wires if ordered else wires[::-1]
    assert deliver(b, arrival) == [frame]
    assert b.received == 2


# -- the generation switch: a second generation must not lose the tail ---------


class _Channel:
    """A data channel: what it carried while open (sends before it opens fail)."""

    def __init__(self) -> None:
        self.readyState = "connecting"
        self.sent: list[bytes] = []
        self.bufferedAmount = 0  # sent at once

    def send(self, wire: bytes) -> None:
        if self.readyState != "open":
            raise ConnectionError("the channel is not open")
        self.sent.append(wire)


class _Pc:
    def __init__(self) -> None:
        self.channel = _Channel()

    def createDataChannel(self, label: str, *, ordered: bool) -> _Channel:
        return self.channel

    async def close(self) -> None:
        self.channel.readyState = "closed"


class _Owner:
    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self.timeouts = Timeouts(resume=30.0)
        self.open = True  # the broker session
        self.network = None

    def _spawn(self, func: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self._tg.start_soon(func)

    def _new_pc(self) -> _Pc:
        return _Pc()


class _Backend:
    @staticmethod
    def route_refused(pc: object, policy: object) -> None:
        return None


class _Conn:
    """The part of a DataConnection that peerpy.resumable and peerpy.generation use."""

    originator = True
    reliable = True
    label = connection_id = "dc_test"
    peer = "remote"
    open = True
    closed = False
    _backend = _Backend()

    def __init__(self, owner: _Owner, timed_out: set[int]) -> None:
        self._owner = owner
        self._timed_out = timed_out  # generations whose attempt times out before opening
        self._sender = Sender(self, 1 << 20)  # type: ignore[arg-type]
        self._sender._limit = 0  # no max-message-size
        self._events = EventEmitter(("reconnecting", "resumed"), owner._spawn, logging.getLogger())
        self.peer_connection = _Pc()
        self._channel: _Channel | None = self.peer_connection.channel
        self._channel.readyState = "open"
        self._resumable = ResumableChannel(self, 1 << 20, logging.getLogger())  # type: ignore[arg-type]
        self._switch = self._resumable.switch
        self.offers: list[int] = []

    def _on_channel_open(self, channel: _Channel) -> None:
        DataConnection._on_channel_open(self, channel)  # type: ignore[arg-type]

    def _attach(self, channel: _Channel) -> None:
        self._channel = channel

    def _watch(self, pc: _Pc) -> None:
        pass

    def _set_open(self) -> None:
        pass

    def _offer_fields(self) -> dict[str, object]:
        return {}

    async def _send_offer(self, extra: dict[str, object], resume: Resume) -> None:
        self.offers.append(resume.generation)

    async def _wait_unless_closed(self, event: anyio.Event) -> bool:
        assert self._resumable is not None
        if self._resumable.switch.generation in self._timed_out:
            return False  # as if Timeouts' ATTEMPT seconds passed
        await event.wait()
        return True


@pytest.mark.anyio
async def test_a_generation_opening_during_the_backoff_is_not_superseded_without_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lab race (a link down, ~11 s): generation 1's attempt timed out, and its channel
    opened during the backoff before generation 2.  It resumed (tail replayed, sends going
    on); no generation may then start without replaying the tail from what the receiver
    has: the receiver gets every message once, in order, on the channel that carries on."""
    receiver = Resumption(window=1 << 20, ordered=True)
    async with anyio.create_task_group() as tg:
        owner = _Owner(tg)
        conn = _Conn(owner, timed_out={1})
        resumable = conn._resumable
        first = conn._channel
        assert resumable is not None
        assert first is not None

        def delays(initial: float, maximum: float) -> Iterator[float]:
            # Generation 1's channel opens just as the originator backs off.
            channel = conn.peer_connection.channel
            channel.readyState = "open"
            conn._on_channel_open(channel)
            assert not resumable.reconnecting
            yield 0.0
            yield from itertools.repeat(0.0)

        monkeypatch.setattr("peerpy.generation.backoff_delays", delays)
        monkeypatch.setattr("peerpy.generation.backends.backend_of", lambda pc: _Backend())
        for n in range(10):
            await resumable.send(f"m{n}", 2)
        arrived = deliver(receiver, first.sent[:5])  # m5..m9 lost with the path
        resumable.switch.lost(PeerError("no ICE consent"))
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            for n in range(10, 20):
                await resumable.send(f"m{n}", 2)
            await anyio.wait_all_tasks_blocked()
            current = conn._channel
            assert current is not None
            if current.readyState != "open":  # a further generation, opening now
                current.readyState = "open"
                conn._on_channel_open(current)
                await resumable.send("m20", 2)
            carried_on = [w for w in current.sent if w[0] != 0x03]  # acks aside
        tg.cancel_scope.cancel()
    arrived += deliver(receiver, carried_on)
    assert arrived == [f"m{n}" for n in range(len(arrived))]
    assert len(arrived) >= 20
