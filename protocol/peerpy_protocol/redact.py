"""Keep peers' secrets out of logs: ``token=`` values and JSON Web Tokens.

A PeerJS client sends its token (its reconnection secret, or a JWT) in the
query string of its WebSocket handshake (``/peerjs?key=…&id=…&token=…``) and
of ``GET <key>/ice``, so any log line that shows a request path or a URL shows
the secret too: websockets' DEBUG log of the handshake, uvicorn's access log, a
refused upgrade.  :func:`redact` replaces the value of every ``token=``
parameter, and anything shaped like a JWT (three base64url parts, the first
starting with ``eyJ``, i.e. ``{"``), with ``[redacted]``;
:class:`RedactSecrets` is a :class:`logging.Filter` that applies it to a
record's message, arguments and traceback text before any handler formats it.
The broker's loggers and CLI handler carry it, the SDK puts it on the
websockets client's logger; an ASGI server's own loggers (uvicorn's access
log) need it in their logging configuration (see ``docs/deploy.md``).

Pure code (``re`` and ``logging`` only), shared by the broker and the SDK.
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["REDACTED", "RedactSecrets", "redact"]

#: What a secret is replaced with.
REDACTED: Final = "[redacted]"
# token=VALUE in a query string, a form or a log line (any case, "access_token="
# too); the value ends at &, whitespace, a quote or #.  URL-encoded in another
# URL ("token%3D"), it ends at "%26" (an encoded &) as well.
_TOKEN: Final = re.compile(r"(?i)(token=)[^&\s\"'#<>]+")
_ENCODED_TOKEN: Final = re.compile(r"(?i)(token%3D)(?:(?!%26)[^&\s\"'#<>])+")
# A compact JWS: base64url header starting {" (eyJ), payload, signature.
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    """``text`` with every ``token=`` value and every JWT replaced by :data:`REDACTED`."""
    if "eyJ" not in text and "oken" not in text.lower():
        return text  # the common case: nothing to look for
    text = _ENCODED_TOKEN.sub(r"\1" + REDACTED, _TOKEN.sub(r"\1" + REDACTED, text))
    return _JWT.sub(REDACTED, text)


def _redacted(value: object) -> object:
    """``value``, or its text redacted if that text holds a secret (numbers pass as they are)."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value)  # an exception or a request whose text holds a URL
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactSecrets(logging.Filter):
    """A logging filter that redacts secrets in place and lets every record through.

    Usable on a logger (records logged on it) or on a handler (every record it
    handles, whichever logger made it); in a ``dictConfig``:
    ``"filters": {"redact": {"()": "peerpy_protocol.redact.RedactSecrets"}}``.
    The message and each argument are redacted separately (an argument that
    is not a string is replaced by its redacted text only when that text holds
    a secret), so formatters that read ``record.args`` (uvicorn's access log)
    keep working;
    an exception's traceback is formatted and redacted into ``exc_text``.
    """

    _formatter: Final = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redacted(arg) for arg in args)
        elif isinstance(args, dict):
            record.args = {key: _redacted(value) for key, value in args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
