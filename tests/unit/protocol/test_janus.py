"""Janus's WebSocket API without I/O: matching replies and events, SFU info in room messages."""

from __future__ import annotations

import json

import pytest
from peerpy_protocol.exceptions import ProtocolError
from peerpy_protocol.janus import Event, JanusCalls, JanusError, Reply, SfuInfo
from peerpy_protocol.rooms import RoomMembers, RoomSfu, parse, serialize


def test_sync_request_gets_success_or_error() -> None:
    """A sync request ends with success (its data) or error (a JanusError with the code)."""
    calls = JanusCalls()
    tid, frame = calls.request({"janus": "create"})
    assert json.loads(frame) == {"janus": "create", "transaction": tid}
    reply = calls.receive(json.dumps({"janus": "success", "transaction": tid, "data": {"id": 5}}))
    assert reply == Reply(tid, {"id": 5})
    assert len(calls) == 0
    tid, _ = calls.request({"janus": "attach"})
    failure = {"janus": "error", "transaction": tid,
               "error": {"code": 458, "reason": "No such session"}}  # fmt: skip
    error = calls.receive(json.dumps(failure))
    assert isinstance(error, Reply)
    assert isinstance(error.error, JanusError)
    assert error.error.code == 458
    assert "No such session" in str(error.error)


def test_async_request_skips_ack_and_ends_with_its_event() -> None:
    """A plugin request with JSEP: the ack is skipped, the event with the transaction ends it;
    a plugin error_code is a JanusError."""
    calls = JanusCalls()
    tid, _ = calls.request({"janus": "message"}, "async")
    assert calls.receive(json.dumps({"janus": "ack", "transaction": tid})) is None
    event = {"janus": "event", "transaction": tid, "sender": 9,
             "plugindata": {"plugin": "janus.plugin.videoroom", "data": {"videoroom": "event"}},
             "jsep": {"type": "answer", "sdp": "v=0"}}  # fmt: skip
    assert calls.receive(json.dumps(event)) == Reply(
        tid, {"videoroom": "event"}, {"type": "answer", "sdp": "v=0"}
    )
    tid, _ = calls.request({"janus": "message"}, "async")
    failed = {"janus": "event", "transaction": tid,
              "plugindata": {"data": {"error_code": 433, "error": "Unauthorized"}}}  # fmt: skip
    reply = calls.receive(json.dumps(failed))
    assert isinstance(reply, Reply)
    assert reply.error is not None
    assert reply.error.code == 433


def test_unsolicited_events_and_forgotten_answers() -> None:
    """Events without a pending transaction go to their handle; stale answers are dropped."""
    calls = JanusCalls()
    tid, _ = calls.request({"janus": "keepalive"})
    calls.forget(tid)
    assert calls.receive(json.dumps({"janus": "ack", "transaction": tid})) is None
    hangup = calls.receive(json.dumps({"janus": "hangup", "sender": 3, "reason": "DTLS"}))
    assert hangup == Event("hangup", 3)
    published = {"janus": "event", "sender": 4,
                 "plugindata": {"data": {"videoroom": "event", "publishers": []}}}  # fmt: skip
    assert calls.receive(json.dumps(published)) == Event(
        "event", 4, {"videoroom": "event", "publishers": []}
    )
    for garbage in ("not json", "[1]", '{"janus": 3}'):
        with pytest.raises(ProtocolError):
            calls.receive(garbage)


def test_sfu_info_in_room_messages() -> None:
    """ROOM-MEMBERS carries "sfu" (null when unreachable) in SFU rooms only; ROOM-SFU round-trips;
    a bad sfu object is a ProtocolError."""
    info = SfuInfo("ws://127.0.0.1:8188", 42, "pin", "tok", 7)
    members = RoomMembers("lobby", {"bob": None}, info, media="sfu")
    assert parse(serialize(members)) == members
    unreachable = RoomMembers("lobby", {}, None, media="sfu")
    assert '"sfu":null' in serialize(unreachable)
    assert parse(serialize(unreachable)) == unreachable
    assert "sfu" not in serialize(RoomMembers("lobby", {}))
    moved = RoomSfu("lobby", info)
    assert parse(serialize(moved)) == moved
    down = RoomSfu("lobby", None, "gone")
    assert parse(serialize(down)) == down
    for bad in ({"url": "http://x", "room": 1, "pin": "", "token": "", "id": 1},
                {"url": "ws://x", "room": 0, "pin": "", "token": "", "id": 1},
                {"url": "ws://x", "room": 1, "pin": 3, "token": "", "id": 1},
                {"url": "ws://x", "room": 1, "pin": "", "token": ""},
                {"url": "ws://x", "room": 1, "pin": "", "token": "", "id": 2**53}, []):  # fmt: skip
        frame = json.dumps({"type": "ROOM-SFU", "payload": {"room": "r", "sfu": bad}})
        with pytest.raises(ProtocolError):
            parse(frame)
