"""The NAT lab as a running service: topology, coturn and the broker in ``pub``.

:func:`running_lab` builds one lab with a NAT of each kind, starts coturn (with
:func:`coturn_config`: docs/turnserver.conf, the configuration the docs show) and the broker
(``python -m peerpy_server.cli``) in ``pub``, and always tears everything
down.  :meth:`RunningLab.pair` runs a listener and a caller (tests/lab/peer.py)
in two lab hosts and returns what they reported.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from .netlab import PUB_ADDRESS, Lab, NatKind

PEER_SCRIPT = Path(__file__).with_name("peer.py")
#: The coturn configuration docs/deploy.md and docs/broker.md show; the lab runs it.
COTURN_CONFIG = Path(__file__).resolve().parents[2] / "docs" / "turnserver.conf"
PROBE = Path(__file__).with_name("probe.py")
BROKER_PORT = 9000
TLS_BROKER_PORT = 9443
TURN_PORT = 3478
STUN_PORT = 3479
TURN_SECRET = "lab-secret-" + os.urandom(8).hex()

#: Lab hosts: name -> (NAT, kind of that NAT).  Hosts sharing a NAT share its LAN.
HOSTS = {
    "lan1": ("natL", NatKind.CONE),
    "lan2": ("natL", NatKind.CONE),
    "cone1": ("natC1", NatKind.CONE),
    "cone2": ("natC2", NatKind.CONE),
    "sym1": ("natS1", NatKind.SYMMETRIC),
    "sym2": ("natS2", NatKind.SYMMETRIC),
    "noudp": ("natU", NatKind.UDP_BLOCKED),
}


def coturn_config(*, secret: str, log_file: str, pid_file: str) -> str:
    """The documented coturn configuration (docs/turnserver.conf), with the lab's secret and files.

    Only the values of ``static-auth-secret``, ``log-file`` and ``pidfile``
    change (tests/unit/server/test_coturn_config.py checks it); the addresses
    are the documented ones, which are the lab's.
    """
    local = {"static-auth-secret": secret, "log-file": log_file, "pidfile": pid_file}
    lines = []
    for line in COTURN_CONFIG.read_text().splitlines():
        name, equals, _ = line.partition("=")
        lines.append(f"{name}={local[name]}" if equals and name in local else line)
    return "\n".join(lines) + "\n"


def turn_credentials(name: str, ttl: float = 600, secret: str = TURN_SECRET) -> tuple[str, str]:
    """coturn REST-API credentials, minted here independently of the broker."""
    username = f"{int(time.time() + ttl)}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def stun_server() -> dict[str, str]:
    return {"urls": f"stun:{PUB_ADDRESS}:{STUN_PORT}"}


def turn_server(name: str, transport: str = "udp") -> dict[str, str]:
    username, credential = turn_credentials(name)
    suffix = "?transport=tcp" if transport == "tcp" else ""
    return {
        "urls": f"turn:{PUB_ADDRESS}:{TURN_PORT}{suffix}",
        "username": username,
        "credential": credential,
    }


def read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The next line ``process`` prints on stdout, within ``timeout`` seconds."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise TimeoutError(f"no line from pid {process.pid} within {timeout} s")
            chunk = os.read(process.stdout.fileno(), 1)
            if not chunk:
                raise EOFError(f"pid {process.pid} exited ({process.poll()}) without a line")
            line += chunk
    return line.decode()


def read_event(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The next JSON line ``process`` prints, within ``timeout`` seconds."""
    event: dict[str, Any] = json.loads(read_line(process, timeout))
    return event


@contextlib.contextmanager
def busy(processes: int, seconds: float) -> Iterator[None]:
    """``processes`` busy loops (CPU load), each ending by itself after ``seconds``."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    spinning = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(processes)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


class RunningLab:
    """A built lab with coturn and the broker running in ``pub``."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.addresses: dict[str, str] = {}
        self.public: dict[str, str] = {}
        self.broker_url = f"http://{PUB_ADDRESS}:{BROKER_PORT}/"
        self.tls_broker_url = f"https://{PUB_ADDRESS}:{TLS_BROKER_PORT}/"
        self.certificate = workdir / "broker.crt"
        self.env = dict(os.environ)
        for name in ("PEERPY_ICE_SERVERS", "PEERPY_ICE_ADDRESSES", "PEERPY_SERVER"):
            self.env.pop(name, None)
        # The lab's peers run on aiortc (see docs/backends.md for wrtc's routes).
        self.env["PEERPY_BACKEND"] = "aiortc"
        self._ids = 0

    def wait_listening(self, spec: str, timeout: float = 15.0) -> None:
        """Wait until ``ss`` in pub shows a socket listening on ``spec`` (e.g. ``-lun``)."""
        flags, port = spec.split(":")
        deadline = time.monotonic() + timeout
        while f":{port} " not in self.lab.exec("pub", ["ss", "-H", flags]) + " ":
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {spec} in pub after {timeout} s")
            time.sleep(0.1)

    def start_services(self, broker_args: tuple[str, ...] = ()) -> None:
        config = self.workdir / "turnserver.conf"
        config.write_text(
            coturn_config(
                secret=TURN_SECRET,
                log_file=str(self.workdir / "turn.log"),
                pid_file=str(self.workdir / "turn.pid"),
            )
        )
        self.lab.spawn("pub", ["turnserver", "-c", str(config)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        self.lab.spawn(
            "pub",
            [sys.executable, "-m", "peerpy_server.cli", "--host", PUB_ADDRESS,
             "--port", str(BROKER_PORT), "--log-level", "WARNING", *broker_args],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.wait_listening(f"-lun:{TURN_PORT}")
        self.wait_listening(f"-ltn:{TURN_PORT}")
        self.wait_listening(f"-ltn:{BROKER_PORT}")

    def start_tls_broker(self, broker_args: tuple[str, ...]) -> None:
        """A second broker, serving HTTPS/WSS with a self-signed certificate for pub."""
        key = self.workdir / "broker.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", f"/CN={PUB_ADDRESS}",
             "-addext", f"subjectAltName=IP:{PUB_ADDRESS}",
             "-keyout", str(key), "-out", str(self.certificate)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        self.lab.spawn(
            "pub",
            [sys.executable, "-m", "peerpy_server.cli", "--host", PUB_ADDRESS,
             "--port", str(TLS_BROKER_PORT), "--sslkey", str(key), "--sslcert",
             str(self.certificate), "--log-level", "WARNING", *broker_args],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.wait_listening(f"-ltn:{TLS_BROKER_PORT}")

    def fresh_id(self, role: str) -> str:
        self._ids += 1
        return f"{role}{self._ids}x{os.getpid()}"

    def peer(
        self, host: str, *args: str, tls: bool = False, backend: str = "aiortc"
    ) -> subprocess.Popen[bytes]:
        """Run tests/lab/peer.py in ``host`` against the broker (``tls``: the HTTPS one).

        ``backend`` is its ``--backend``, unless ``args`` give one.
        """
        env = dict(self.env, SSL_CERT_FILE=str(self.certificate)) if tls else self.env
        server = self.tls_broker_url if tls else self.broker_url
        return self.lab.spawn(
            host,
            [sys.executable, str(PEER_SCRIPT), "--backend", backend, *args, "--server", server],
            env=env,
            stderr=subprocess.DEVNULL,
        )

    def pair(
        self,
        listener: str,
        caller: str,
        *,
        listener_ice: list[dict[str, str]] | str,
        caller_ice: list[dict[str, str]] | str,
        negotiation: float = 30.0,
        tls: bool = False,
        backends: tuple[str, str] = ("aiortc", "aiortc"),
    ) -> Outcome:
        """Run one 1 MiB echo from ``caller`` to ``listener`` (two lab hosts).

        ``backends``: the listener's and the caller's ``--backend``.
        """
        listen_id, call_id = self.fresh_id("l"), self.fresh_id("c")

        def ice(value: list[dict[str, str]] | str) -> str:
            return value if isinstance(value, str) else json.dumps(value)

        limit = negotiation + 20
        server = self.peer(listener, "listen", listen_id, "--ice", ice(listener_ice),
                           "--deadline", str(limit + 10), tls=tls,
                           backend=backends[0])  # fmt: skip
        try:
            registered = read_event(server, 15)
            assert registered["event"] == "registered", registered
            client = self.peer(caller, "connect", call_id, listen_id, "--ice", ice(caller_ice),
                               "--deadline", str(limit),
                               "--negotiation", str(negotiation), tls=tls,
                               backend=backends[1])  # fmt: skip
            try:
                caller_registered = read_event(client, 15)
                assert caller_registered["event"] == "registered", caller_registered
                first = read_event(client, limit)
                if first["event"] != "open":
                    return Outcome(registered, caller_registered, None, first)
                done = read_event(client, limit)
                accepted = read_event(server, 5)
                assert accepted["event"] == "open", accepted
                closed = read_event(server, 10) if done["event"] == "done" else None
                return Outcome(registered, caller_registered, accepted, done, first, closed)
            finally:
                Lab.stop(client)
        finally:
            Lab.stop(server)

    def media_call(
        self, answerer: str, caller: str, *, ice: str = "broker", deadline: float = 40.0
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A media call both ways; return each side's ``media`` report (answerer's first)."""
        answer_id, call_id = self.fresh_id("a"), self.fresh_id("m")
        bounds = ("--ice", ice, "--deadline", str(deadline))
        server = self.peer(answerer, "answer", answer_id, *bounds)
        try:
            assert read_event(server, 15)["event"] == "registered"
            client = self.lab.spawn(
                caller,
                [sys.executable, str(PEER_SCRIPT), "call", call_id, answer_id, *bounds,
                 "--server", self.broker_url],
                env=self.env, stderr=subprocess.DEVNULL, stdin=subprocess.PIPE,
            )  # fmt: skip
            try:
                assert read_event(client, 15)["event"] == "registered"
                at_caller = read_event(client, deadline)
                at_answerer = read_event(server, deadline)
                assert client.stdin is not None
                client.stdin.write(b"bye\n")  # hang up
                client.stdin.flush()
                assert client.wait(timeout=15) == 0
                assert server.wait(timeout=15) == 0
                return at_answerer, at_caller
            finally:
                Lab.stop(client)
        finally:
            Lab.stop(server)


@attrs.frozen
class Outcome:
    """What the two lab peers reported."""

    listener_registered: dict[str, Any]
    caller_registered: dict[str, Any]
    #: The listener's ``open`` event (``None`` if the connection never opened).
    listener_open: dict[str, Any] | None
    #: The caller's ``done`` (or ``error``) event.
    caller_result: dict[str, Any]
    #: The caller's ``open`` event, with ``opened_in`` (``None`` if it never opened).
    caller_open: dict[str, Any] | None = None
    #: The listener's ``closed`` event, with the route it ended on (after a ``done``).
    listener_closed: dict[str, Any] | None = None

    @property
    def routes(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(listener's route, caller's route); fails unless the echo completed."""
        assert self.caller_result["event"] == "done", self.caller_result
        assert self.caller_result["ok"] is True, self.caller_result
        assert self.caller_result["bytes"] == 1 << 20
        assert self.listener_open is not None
        return self.listener_open["route"], self.caller_result["route"]


@contextlib.contextmanager
def running_lab() -> Iterator[RunningLab]:
    """Build the lab and start its services; always remove everything."""
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory(prefix="peerpy-netlab-") as workdir:
            running = RunningLab(lab, Path(workdir))
            nats: dict[str, str] = {}
            for host, (nat, kind) in HOSTS.items():
                if nat not in nats:
                    nats[nat] = lab.add_nat(nat, kind)
                running.addresses[host] = lab.add_host(host, nat)
                running.public[host] = nats[nat]
            os.chmod(workdir, 0o755)  # coturn may drop privileges
            running.start_services(
                ("--stun", "--stun-port", str(STUN_PORT),
                 "--turn-url", f"turn:{PUB_ADDRESS}:{TURN_PORT}", "--turn-secret", TURN_SECRET)
            )  # fmt: skip
            running.wait_listening(f"-lun:{STUN_PORT}")
            running.start_tls_broker(
                ("--turn-url", f"turn:{PUB_ADDRESS}:{TURN_PORT}", "--turn-secret", TURN_SECRET)
            )
            yield running
    finally:
        lab.close()
