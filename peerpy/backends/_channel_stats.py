"""A data connection's channel counted by peerpy: messages and payload bytes, both ways.

aiortc's stats report no data channel, and libwebrtc's drop a channel once
it closed; a connection's figures must stay readable after it closed (the
command line prints them at the end of a transfer). So each backend's
``tune_channel`` calls :func:`count_channel` before the channel opens, and
its ``stats_report`` adds :func:`channel_entry` (a W3C ``data-channel``
entry) when its own report has none for the channel.

The counts are the W3C's ``RTCDataChannelStats``: ``bytesSent`` and
``bytesReceived`` are payload bytes (a string's UTF-8 bytes), without SCTP
or DTLS headers, counted as the application hands a message to the channel
and as the channel delivers one.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

__all__ = ["channel_entry", "count_channel"]

_COUNTS: Final = "_peerpy_counts"
#: The stats id of the entry peerpy adds.
ENTRY_ID: Final = "data-channel_peerpy"


@dataclasses.dataclass
class _Counts:
    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0

    def received(self, message: bytes | str) -> None:
        self.messages_received += 1
        self.bytes_received += _payload_size(message)


def _payload_size(message: bytes | str) -> int:
    if isinstance(message, bytes) or message.isascii():
        return len(message)
    return len(message.encode())


def count_channel(channel: RTCDataChannel) -> None:
    """Count the messages and payload bytes ``channel`` sends and receives from now on.

    Its ``send`` is wrapped on this object only (not the class).
    """
    if getattr(channel, _COUNTS, None) is not None:
        return
    counts = _Counts()
    send = channel.send

    def counted_send(data: bytes | str) -> None:
        send(data)
        counts.messages_sent += 1
        counts.bytes_sent += _payload_size(data)

    setattr(channel, "send", counted_send)  # noqa: B010 - per object, not the class
    channel.on("message", counts.received)
    setattr(channel, _COUNTS, counts)


def channel_entry(channel: RTCDataChannel | None) -> dict[str, Any] | None:
    """The W3C ``data-channel`` entry of a counted ``channel``; ``None`` if not counted."""
    counts = getattr(channel, _COUNTS, None)
    if channel is None or not isinstance(counts, _Counts):
        return None
    return {
        "type": "data-channel",
        "id": ENTRY_ID,
        "label": channel.label,
        "state": channel.readyState,
        "messagesSent": counts.messages_sent,
        "bytesSent": counts.bytes_sent,
        "messagesReceived": counts.messages_received,
        "bytesReceived": counts.bytes_received,
    }
