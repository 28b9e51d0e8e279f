"""Secrets out of log records: the redaction function, the filter, the loggers it is on."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import jwt
from peerpy_protocol.redact import REDACTED, RedactSecrets, redact
from peerpy_server.logs import REDACTED_LOGGERS

SERVER = Path(__file__).resolve().parents[3] / "server" / "peerpy_server"
JWT = jwt.encode({"sub": "alice"}, "k" * 32, algorithm="HS256")


def test_token_values_and_jwts_are_redacted() -> None:
    cases = {
        "GET /peerjs?key=peerjs&id=a&token=s3cret&version=1 HTTP/1.1":
            f"GET /peerjs?key=peerjs&id=a&token={REDACTED}&version=1 HTTP/1.1",
        "/ice?TOKEN=abc": f"/ice?TOKEN={REDACTED}",
        "next=%2Fx%3Ftoken%3Dabc%26y": f"next=%2Fx%3Ftoken%3D{REDACTED}%26y",
        f"bearer {JWT} seen": f"bearer {REDACTED} seen",
        "token= nothing": "token= nothing",
        "Client connected: alice": "Client connected: alice",
        "the tokens were fine": "the tokens were fine",
    }  # fmt: skip
    for text, expected in cases.items():
        assert redact(text) == expected, text


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("x", logging.INFO, __file__, 1, msg, args or None, exc_info)


def test_the_filter_redacts_message_arguments_and_traceback_in_place() -> None:
    """uvicorn-style records (the path an argument) keep their arguments, redacted."""
    record = _record('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/ice?token=abc", "1.1", 200)
    assert RedactSecrets().filter(record) is True
    assert record.args == ("1.2.3.4:5", "GET", f"/ice?token={REDACTED}", "1.1", 200)
    assert record.getMessage() == f'1.2.3.4:5 - "GET /ice?token={REDACTED} HTTP/1.1" 200'
    try:
        raise ValueError(f"bad URL /peerjs?token={JWT}")
    except ValueError as exc:
        error = exc
    record = _record("failed: %s", error, exc=error)
    RedactSecrets().filter(record)
    assert JWT not in record.getMessage()
    assert record.exc_text is not None
    assert JWT not in record.exc_text
    assert f"token={REDACTED}" in record.exc_text
    assert JWT not in logging.Formatter().format(record)


def test_every_broker_logger_carries_the_filter() -> None:
    """Each logger named in the broker's sources is filtered (new modules included)."""
    named = set()
    for source in SERVER.rglob("*.py"):
        named |= set(re.findall(r'getLogger\("(peerpy_server[\w.]*)"\)', source.read_text()))
    assert named, "no logger found"
    assert named <= set(REDACTED_LOGGERS), named - set(REDACTED_LOGGERS)
    for name in REDACTED_LOGGERS:
        assert any(isinstance(f, RedactSecrets) for f in logging.getLogger(name).filters), name
