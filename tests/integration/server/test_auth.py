"""Who may register (peerpy_server.auth): JWT tokens over real sockets on 127.0.0.1.

A shared secret or a public key (from the CLI), ``--jwt-audience``, short
secrets refused at startup, refusals counted and logged.  The tokens are made
with PyJWT, the keys with cryptography.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from peerpy_server.cli import build_parser, config_from_args

from ...helpers.signaling import client, peer_client
from ...helpers.targets import run_ours

pytestmark = pytest.mark.anyio

SECRET = "s3cret-for-tests-only-32-bytes!!"


def _token(sub: str, key: object = SECRET, algorithm: str = "HS256", **claims: object) -> str:
    return jwt.encode({"sub": sub, **claims}, key, algorithm=algorithm)  # type: ignore[arg-type]


async def test_jwt_secret_admits_matching_sub_and_refuses_the_rest() -> None:
    later = int(time.time()) + 600
    async with run_ours(jwt_secret=SECRET) as target:
        # sub == id, and sub == "*": registered.
        async with (
            peer_client(target, "alice", _token("alice", exp=later)) as alice,
            peer_client(target, "bob", _token("*")) as bob,
        ):
            await alice.send({"type": "OFFER", "dst": "bob", "payload": {"sdp": "x"}})
            assert (await bob.recv())["src"] == "alice"
        refusals = {
            "missing": "not-a-jwt",
            "other sub": _token("mallory"),
            "expired": _token("alice", exp=int(time.time()) - 5),
            "wrong secret": _token("alice", key="another-secret-of-32-bytes-long!!"),
            "no sub": jwt.encode({"exp": later}, SECRET, algorithm="HS256"),
            "none alg": jwt.encode({"sub": "alice"}, None, algorithm="none"),
        }
        for name, token in refusals.items():
            async with client(target.ws_url(id="alice", token=token)) as c:
                message = await c.recv()
                assert message["type"] == "ERROR", name
                assert message["payload"]["msg"].startswith("Invalid token"), name
                assert await c.closed() is not None, name
        expired = refusals["expired"]
        async with client(target.ws_url(id="alice", token=expired)) as c:
            assert (await c.recv())["payload"]["msg"] == "Invalid token: expired"
        # A same-token takeover still works with the JWT as token.
        token = _token("alice", exp=later)
        async with (
            peer_client(target, "alice", token) as first,
            peer_client(target, "alice", token),
        ):
            assert await first.closed() == 1000
        assert target.broker is not None
        assert target.broker.stats.refused["invalid-token"] == len(refusals) + 1


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
async def test_jwt_public_key_from_the_cli(tmp_path: Path, kind: str) -> None:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    args = build_parser().parse_args(["-p", "0", "--jwt-public-key", str(pem)])
    config = config_from_args(args)
    assert config.jwt_public_key is not None
    async with run_ours(jwt_public_key=config.jwt_public_key) as target:
        async with peer_client(target, "alice", _token("alice", private, kind)):
            pass
        # A token signed with the shared-secret algorithm is refused (no key confusion).
        async with client(target.ws_url(id="bob", token=_token("bob"))) as c:
            assert (await c.recv())["type"] == "ERROR"


def test_bad_jwt_flags_are_clear_errors(tmp_path: Path) -> None:
    parser = build_parser()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    for argv, text in [
        (["--jwt-public-key", str(bad)], "cannot load the JWT public key"),
        (["--jwt-public-key", str(tmp_path / "missing.pem")], "cannot read --jwt-public-key"),
        (["--jwt-secret", "x", "--jwt-public-key", str(bad)], "not both"),
    ]:
        with pytest.raises(ValueError, match=text):
            config_from_args(parser.parse_args(["-p", "0", *argv]))


async def test_cli_refuses_a_short_hs256_secret_with_status_2() -> None:
    """`peerpy-server --jwt-secret <31 bytes>` exits 2 at startup and says why."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerpy_server.cli", "-H", "127.0.0.1", "-p", "0",
        "--jwt-secret", "x" * 31,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"Started" not in out
    assert "the JWT secret has 31 bytes; HS256 needs at least 32" in err.decode()


async def test_audience_is_checked_and_refusals_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--jwt-audience: the right aud registers; another or none: ERROR, logged with id, address."""
    caplog.set_level(logging.INFO, logger="peerpy_server.realm")
    async with run_ours(jwt_secret=SECRET, jwt_audience="peers.example") as target:
        assert target.broker is not None
        async with peer_client(target, "alice", _token("alice", aud="peers.example")):
            pass
        for bad in (_token("bob", aud="chat.example"), _token("bob")):
            async with client(target.ws_url(id="bob", token=bad)) as c:
                error = await c.recv()
                assert error["type"] == "ERROR"
                assert error["payload"]["msg"] == "Invalid token: not for this audience"
        assert target.broker.stats.refused["invalid-token"] == 2
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Refused id")]
    assert refusals == ["Refused id bob from 127.0.0.1: Invalid token: not for this audience"] * 2
