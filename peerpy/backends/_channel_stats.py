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
and as the channel delivers one.  On a resumable connection they include
resumption's envelopes and acknowledgements; ``DataConnection.stats()``
reports its own count of the application's payload instead (the entry stays
in the report the backend builds).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final

from ..stats import payload_size

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

__all__ = ["channel_entry", "count_channel"]

_COUNTS: Final = "_peerpy_counts"
#: The stats id of the entry peerpy adds.
ENTRY_ID: Final = "data-channel_peerpy"


@dataclasses.dataclass
class _Counts:
    """One channel's messages and payload bytes, each way (the W3C entry's numbers).

    The counting ``send`` and the ``message`` listener update it.
    """

    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0

    def sent(self, message: bytes | str) -> None:
        self.messages_sent += 1
        self.bytes_sent += payload_size(message)

    def received(self, message: bytes | str) -> None:
        self.messages_received += 1
        self.bytes_received += payload_size(message)


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
        counts.sent(data)

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
