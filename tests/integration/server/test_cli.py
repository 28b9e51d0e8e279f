"""``peerpy-server``: flags like ``peer``'s, env vars, startup line, SIGTERM, TLS, JSON logs."""

from __future__ import annotations

import asyncio
import datetime
import json
import signal
import ssl
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from peerpy_server.cli import build_parser, config_from_args, main
from websockets.asyncio.client import connect

from ...helpers.brokers import free_port
from ...helpers.targets import run_ours


def parse(*argv: str) -> object:
    return config_from_args(build_parser().parse_args(argv))


def test_flags_map_to_config_with_milliseconds() -> None:
    """peer's flags and aliases set the config; times given in ms become seconds."""
    config = parse(
        "-p", "9001", "-H", "127.0.0.1", "--path", "/myapp/", "-k", "k",
        "-t", "2500", "--alive_timeout", "30000", "-c", "7", "--allow_discovery",
        "--proxied", "--cors", "http://a", "http://b",
    )  # fmt: skip
    assert config == parse(
        "--port", "9001", "--host", "127.0.0.1", "--path", "myapp", "--key", "k",
        "--expire_timeout", "2500", "--alive_timeout", "30000", "--concurrent_limit", "7",
        "--allow_discovery", "--proxied", "--cors", "http://a", "--cors", "http://b",
    )  # fmt: skip
    assert config.port == 9001  # type: ignore[attr-defined]
    assert config.path == "/myapp"  # type: ignore[attr-defined]
    assert config.expire_timeout == 2.5  # type: ignore[attr-defined]
    assert config.alive_timeout == 30.0  # type: ignore[attr-defined]
    assert config.cors_origins == ("http://a", "http://b")  # type: ignore[attr-defined]


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """PORT and PEERSERVER_PATH are read like peer; defaults match peer's CLI."""
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("PEERSERVER_PATH", "/fromenv")
    config = parse()
    assert config.port == 9123  # type: ignore[attr-defined]
    assert config.path == "/fromenv"  # type: ignore[attr-defined]
    assert config.alive_timeout == 60.0  # type: ignore[attr-defined]
    assert config.expire_timeout == 5.0  # type: ignore[attr-defined]
    assert config.key == "peerjs"  # type: ignore[attr-defined]


def test_default_port_and_lone_tls_file_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No port means 9000 (what clients assume); one of --sslkey/--sslcert prints why, returns 1."""
    monkeypatch.delenv("PORT", raising=False)
    assert parse().port == 9000  # type: ignore[attr-defined]
    monkeypatch.setenv("PORT", "nine")
    assert main([]) == 1
    assert "PORT environment variable is not a port" in capsys.readouterr().err
    assert main(["-p", "1", "--sslkey", "k.pem"]) == 1
    assert "either the key or the certificate" in capsys.readouterr().err


def test_help_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """-h lists each of peer's flags."""
    with pytest.raises(SystemExit):
        main(["-h"])
    text = capsys.readouterr().out
    for flag in (
        "--port", "-p", "--host", "-H", "--path", "--key", "-k", "--expire_timeout", "-t",
        "--alive_timeout", "--concurrent_limit", "-c", "--allow_discovery", "--proxied",
        "--sslkey", "--sslcert", "--cors",
    ):  # fmt: skip
        assert flag in text


@pytest.mark.anyio
async def test_cli_starts_and_stops_on_sigterm() -> None:
    """The CLI prints its URL, serves, and exits 0 on SIGTERM."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerpy_server.cli", "-H", "127.0.0.1", "-p", str(port),
        "--path", "/myapp",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        assert f"http://127.0.0.1:{port}/myapp/" in line
        assert line.startswith("Started PeerServer on 127.0.0.1")
        async with connect(f"ws://127.0.0.1:{port}/myapp/peerjs?key=peerjs&id=a&token=t") as ws:
            assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"OPEN"}'
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1001
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.anyio
async def test_tls_from_cert_and_key_files(tmp_path: Path) -> None:
    """With ssl_certfile/ssl_keyfile the broker serves wss:// and an https URL."""
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert_file))
    async with run_ours(ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as target:
        assert target.broker is not None
        assert target.broker.url.startswith("https://")
        url = f"wss://127.0.0.1:{target.port}/myapp/peerjs?key=peerjs&id=a&token=t"
        async with connect(url, ssl=context, server_hostname="localhost") as ws:
            assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"OPEN"}'
        # Python 3.10's asyncio leaves a TLS transport the server closed marked
        # open, and warns (an error here) when it is collected.
        ws.transport.close()


@pytest.mark.anyio
async def test_cli_logs_json_lines() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "peerpy_server.cli", "-H", "127.0.0.1", "-p", str(port),
        "--log-format", "json",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        first = json.loads(await asyncio.wait_for(proc.stderr.readline(), 15))
        assert first["level"] == "INFO"
        assert first["logger"] == "peerpy_server.broker"
        assert first["message"].startswith("Broker listening on")
        assert first["time"].endswith("Z")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        rest = (await proc.stderr.read()).decode().splitlines()
        assert rest
        assert all(json.loads(line)["logger"] for line in rest)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
