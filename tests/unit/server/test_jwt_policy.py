"""JWT policy, pure: the HS256 secret length floor and the ``aud`` check."""

from __future__ import annotations

import jwt
import pytest
from peerpy_server import BrokerConfig
from peerpy_server.auth import MIN_SECRET_BYTES, JwtAuthorizer, WeakSecretError

SECRET = "k" * MIN_SECRET_BYTES


def test_a_secret_under_32_bytes_is_refused() -> None:
    """31 bytes (UTF-8) is refused, 32 accepted; multi-byte characters count as bytes."""
    with pytest.raises(WeakSecretError, match="at least 32"):
        JwtAuthorizer(secret="k" * 31)
    with pytest.raises(WeakSecretError):
        JwtAuthorizer(secret="é" * 15)  # 15 characters, 30 bytes
    JwtAuthorizer(secret="é" * 16)
    assert issubclass(WeakSecretError, ValueError)


def test_audience_must_match_when_configured() -> None:
    """With an audience, a token without aud or for another audience is refused."""
    check = JwtAuthorizer.from_config(
        BrokerConfig(port=0, jwt_secret=SECRET, jwt_audience="peers.example")
    ).authorize

    def token(**claims: object) -> str:
        return jwt.encode({"sub": "alice", **claims}, SECRET, algorithm="HS256")

    assert check("alice", token(aud="peers.example")) is None
    assert check("alice", token(aud=["other", "peers.example"])) is None
    assert check("alice", token(aud="chat.example")) == "Invalid token: not for this audience"
    assert check("alice", token()) == "Invalid token: not for this audience"
    assert check("bob", token(aud="peers.example")) == "Invalid token: its sub claim is not this id"


def test_without_audience_aud_is_not_checked() -> None:
    check = JwtAuthorizer(secret=SECRET).authorize
    assert check("alice", jwt.encode({"sub": "alice", "aud": "x"}, SECRET)) is None
