"""A data connection's receive path: messages in, values out, bounded in bytes.

:class:`Receiver` takes each message the data channel of one
:class:`~peerpy.dataconnection.DataConnection` delivers (on a resumable
connection, what :class:`~peerpy.resumable.ResumableChannel` takes out of its
envelope), decodes it with the connection's serializer and hands each value to
the ``data`` handlers, if there are any, else to :attr:`Receiver.inbox`,
where :meth:`~peerpy.dataconnection.DataConnection.recv` reads it.  PeerJS's
in-band close request closes the connection.

The bound, ``Limits.receive_buffer_bytes``, covers everything received and
not yet read (:attr:`Receiver.held_bytes`): values in the inbox, each counted
by the serializer's estimate of its decoded size, plus what the serializer
holds for values not complete yet.  Past it the connection fails with
:class:`~peerpy.exceptions.ProtocolError`; values already queued stay readable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import DecodeError, ProtocolError
from .mailbox import Mailbox, MailboxFull
from .serialization import CLOSE
from .stats import payload_size

if TYPE_CHECKING:
    from .dataconnection import DataConnection

__all__ = ["Receiver"]


class Receiver:
    """Decodes one data connection's messages into values (see the module docstring)."""

    def __init__(self, conn: DataConnection, max_bytes: int) -> None:
        self._conn = conn
        #: Values received and not read yet.
        self.inbox: Mailbox[Any] = Mailbox(max_bytes=max_bytes)
        #: Payload bytes received (each message once: duplicates after a resume excluded).
        self.received_bytes = 0

    @property
    def held_bytes(self) -> int:
        """Bytes received and not read: the inbox's values plus incomplete ones."""
        return self.inbox.bytes + self._conn._serializer.held_bytes

    def on_message(self, message: bytes | str) -> None:
        """Decode one data-channel message and deliver its values (from the channel's event)."""
        conn = self._conn
        if conn.closed or conn._error is not None:  # failed: decode nothing more
            return
        if conn._resumable is not None:
            frame = conn._resumable.receive(message)
            if frame is None:
                return
            message = frame
        self.received_bytes += payload_size(message)
        try:
            values = conn._serializer.decode_sized(message)
        except DecodeError as exc:
            conn._fail(exc)
            return
        events, inbox = conn._events, self.inbox
        for value, size in values:
            if value is CLOSE:
                conn._close_requested = True
                conn._close_soon()
                return
            if events.has("data"):
                events.emit("data", value)
                continue
            try:
                inbox.put_nowait(value, size)
            except MailboxFull:
                self._fail_unread(inbox.bytes + size)
                return
        if self.held_bytes > inbox.max_bytes:
            self._fail_unread(self.held_bytes)

    def _fail_unread(self, held: int) -> None:
        """Fail the connection: more than the receive buffer is received and unread.

        Values already queued stay readable; nothing more is decoded.
        """
        self._conn._fail(
            ProtocolError(
                f"{held} bytes received and not read (partial values included) exceed "
                f"Limits.receive_buffer_bytes={self.inbox.max_bytes}; "
                "read faster or raise Limits.receive_buffer_bytes"
            )
        )
