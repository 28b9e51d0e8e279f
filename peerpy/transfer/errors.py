"""The exceptions of file transfers, under peerpy's one exception tree.

::

    PeerError
    ├── UsageError
    │   └── TransferUsageError          bad paths, bad code, conflicting options
    │       └── BadCodeError                a code that does not parse
    └── TransferError               a transfer failed (root of the rest)
        ├── AuthenticationError         the code or the DTLS fingerprints do not match
        │   └── ManInTheMiddleError         same code, different DTLS fingerprints
        ├── TransferProtocolError       the other side broke the transfer protocol
        │   └── UnsafePathError             a name that would escape the target
        ├── IntegrityError              a file's hash or a resume prefix differs
        ├── TargetExistsError           a file exists and neither overwrite nor rename
        ├── DiskFullError               no room left on the receiving disk
        ├── PeerVanishedError           the other side went away mid-transfer
        ├── RejectedError               the receiver declined the offer
        ├── StoppedError                the other side stopped on purpose (Ctrl-C, a signal)
        ├── NoSenderError               no sender waits under that code
        └── RemoteError                 the other side reported a failure
"""

from __future__ import annotations

from ..exceptions import PeerError, ProtocolError, UsageError

__all__ = [
    "AuthenticationError",
    "BadCodeError",
    "DiskFullError",
    "IntegrityError",
    "ManInTheMiddleError",
    "NoSenderError",
    "PeerVanishedError",
    "RejectedError",
    "RemoteError",
    "StoppedError",
    "TargetExistsError",
    "TransferError",
    "TransferProtocolError",
    "TransferUsageError",
    "UnsafePathError",
]


class TransferUsageError(UsageError, ValueError, type="transfer-usage"):
    """A transfer was asked for with bad arguments (missing path, bad option)."""


class BadCodeError(TransferUsageError, type="bad-code"):
    """A transfer code that does not look like ``7-purple-sausage``."""


class TransferError(PeerError, type="transfer"):
    """A file transfer failed; the message says why and what to do."""

    #: What the other side is told instead of ``str(self)``, when this side's
    #: text names things only this side has (its command-line flags, "you").
    for_peer: str | None = None

    def telling_peer(self, text: str) -> TransferError:
        """Set :attr:`for_peer` to ``text``; return ``self`` (for ``raise``)."""
        self.for_peer = text
        return self


class AuthenticationError(TransferError, type="authentication"):
    """The other side could not prove it knows the code (wrong code, or tampering)."""


class ManInTheMiddleError(AuthenticationError, type="man-in-the-middle"):
    """Both sides know the code but see different DTLS certificates: someone is in between."""


class TransferProtocolError(TransferError, ProtocolError, type="transfer-protocol"):
    """The other side sent a message the transfer protocol does not allow here."""


class UnsafePathError(TransferProtocolError, type="unsafe-path"):
    """An offered name is absolute, climbs with ``..``, crosses a link or names a device."""


class IntegrityError(TransferError, type="integrity"):
    """Received bytes do not hash to what the sender read."""


class TargetExistsError(TransferError, type="target-exists"):
    """A received file would replace an existing one."""


class DiskFullError(TransferError, type="disk-full"):
    """The receiving disk has no room for the rest of the transfer."""


class PeerVanishedError(TransferError, type="peer-vanished"):
    """The other side closed or stopped answering before the transfer finished."""

    #: Whether both sides had proved the code on that connection: only then may
    #: the same code reconnect to resume.
    after_auth: bool = False


class RejectedError(TransferError, type="rejected"):
    """The receiver declined the offer."""


class StoppedError(TransferError, type="stopped"):
    """The other side stopped the transfer on purpose (Ctrl-C, SIGTERM); partial files stay."""


class RemoteError(TransferError, type="remote-error"):
    """The other side reported an error and stopped."""


class NoSenderError(TransferError, type="no-sender"):
    """Nobody waits on the broker under the code's nameplate."""
