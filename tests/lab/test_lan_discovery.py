"""``peerpy send`` / ``peerpy receive CODE`` on one LAN with no broker anywhere (issue 23).

Four lab hosts share one bridge (a LAN, 10.1.0.0/24, multicast on): each
side runs the real command line (``python -m peerpy.cli``) in its own
namespace with no ``--server`` and no ``PEERPY_SERVER``.  The sender runs
its own broker and announces it with mDNS/DNS-SD under its nameplate; the
receiver finds it.  Nothing listens in ``pub`` (the lab's "Internet").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers.unavailable import unavailable
from .netlab import Lab, LabUnavailable, NatKind, lab_unavailable_reason, wait_for

pytestmark = [pytest.mark.netlab, pytest.mark.timeout(120)]

HOSTS = ("a1", "a2", "b1", "b2")


class LanLab:
    """The lab hosts on one LAN, and the command lines run there."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.addresses: dict[str, str] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PEERPY_")}
        self.env.update(PEERPY_ICE_SERVERS="", PEERPY_BACKEND="aiortc")
        self._runs = 0
        #: The command lines the current test started (stopped when it ends).
        self.started: list[Cli] = []

    def cli(self, host: str, *argv: str, stdin: int | None = subprocess.DEVNULL) -> Cli:
        """Start ``peerpy ARGV`` in lab host ``host``; output goes to files."""
        self._runs += 1
        cli = Cli(self, host, f"{host}-{self._runs}", list(argv), stdin)
        self.started.append(cli)
        return cli

    def stop_started(self) -> None:
        """Stop what the test started and left running (it failed before waiting for it),
        so that no sender of one test still listens or announces in the next."""
        for cli in self.started:
            Lab.stop(cli.process)
        self.started.clear()

    def listening(self, host: str) -> list[str]:
        """The TCP addresses something listens on in ``host`` (``ss -ltn``)."""
        lines = self.lab.exec(host, ["ss", "-Hltn"]).splitlines()
        return [line.split()[3] for line in lines if line.strip()]


class Cli:
    """One ``python -m peerpy.cli`` process in a lab host."""

    def __init__(
        self, lan: LanLab, host: str, tag: str, argv: list[str], stdin: int | None
    ) -> None:
        self.out_path = lan.workdir / f"{tag}.out"
        self.err_path = lan.workdir / f"{tag}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = lan.lab.spawn(
                host,
                [sys.executable, "-m", "peerpy.cli", *argv],
                env=lan.env,
                stdout=out.fileno(),
                stderr=err.fileno(),
                stdin=stdin,
            )

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def code(self, timeout: float = 60) -> str:
        """The ``Code: ...`` the sender prints once announced (how soon is not under test:
        the command line starts slowly on a loaded machine)."""
        wait_for(lambda: "Code: " in self.out() or self.process.poll() is not None, timeout,
                 "the sender's code")  # fmt: skip
        match = re.search(r"^Code: (\S+)$", self.out(), re.MULTILINE)
        assert match is not None, self.err()
        return match[1]

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running; stderr:\n{self.err()}") from None


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanLab]:
    reason = lab_unavailable_reason()
    if reason is not None:
        unavailable(reason)
    lab = Lab()
    try:
        lab.add_nat("sw", NatKind.CONE)
        # Multicast reaches every port of the LAN's bridge, whatever IGMP it saw.
        lab.ip(lab.ns("sw"), "link", "set", "brl", "type", "bridge", "mcast_snooping", "0")
        running = LanLab(lab, tmp_path_factory.mktemp("lan"))
        for host in HOSTS:
            running.addresses[host] = lab.add_host(host, "sw")
        yield running
    except LabUnavailable as exc:
        pytest.fail(str(exc))
    finally:
        lab.close()


@pytest.fixture(autouse=True)
def stop_leftovers(lan: LanLab) -> Iterator[None]:
    yield
    lan.stop_started()


def make_tree(root: Path, seed: str) -> dict[str, str]:
    """A folder with a nested file and a 300 KiB one; their SHA-256 by relative path."""
    (root / "sub").mkdir(parents=True)
    (root / "small.txt").write_text(f"hello from {seed}\n")
    (root / "sub" / "big.bin").write_bytes(hashlib.sha256(seed.encode()).digest() * 9600)
    return tree_digests(root)


def tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_pairs_move_folders_at_once_without_a_broker(lan: LanLab, tmp_path: Path) -> None:
    """Two transfers on one LAN at the same time: each receiver gets its own folder."""
    trees = {name: make_tree(tmp_path / name / "photos", name) for name in ("a", "b")}
    send_a = lan.cli("a1", "send", str(tmp_path / "a" / "photos"))
    send_b = lan.cli("b1", "send", str(tmp_path / "b" / "photos"))
    code_a, code_b = send_a.code(), send_b.code()
    assert code_a.split("-")[0] != code_b.split("-")[0]  # two nameplates on one network
    # The hint names no broker: on the local network none is needed.
    hint = f"On the other machine on this network run:  peerpy receive {code_a}"
    # On stderr, the code on stdout: which of the two is written first is not ordered.
    wait_for(lambda: hint in send_a.err(), 10, "the sender's hint")
    # While it waits, the sender's broker listens on its LAN address only.
    listening = lan.listening("a1")
    assert listening, listening
    assert all(a.startswith(lan.addresses["a1"] + ":") for a in listening), listening
    outs = {name: tmp_path / name / "out" for name in ("a", "b")}
    recv_a = lan.cli("a2", "receive", code_a, "--yes", "-o", str(outs["a"]))
    recv_b = lan.cli("b2", "receive", code_b, "--yes", "-o", str(outs["b"]))
    for cli in (recv_a, recv_b, send_a, send_b):
        assert cli.wait() == 0, cli.err()
    for name in ("a", "b"):
        assert tree_digests(outs[name] / "photos") == trees[name]
    assert "SHA-256 verified" in recv_a.err()
    assert "verified by the receiver" in send_a.err()
    # Done: the broker is gone with the sender.
    assert lan.listening("a1") == []


def test_wrong_code_fails_as_with_a_broker(lan: LanLab, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("secret")
    sender = lan.cli("a1", "send", str(tmp_path / "f.txt"))
    nameplate = sender.code().split("-")[0]
    wrong = f"{nameplate}-zebra-zipper" if "zebra" not in sender.code() else f"{nameplate}-acorn"
    receiver = lan.cli("a2", "receive", wrong, "--yes", "-o", str(tmp_path / "out"))
    assert receiver.wait() == 1
    assert sender.wait() == 1
    assert "wrong code: it does not match the sender's" in receiver.err()
    assert "the receiver does not know the code" in sender.err()
    assert not (tmp_path / "out" / "f.txt").exists()


def test_receiver_started_first_waits_a_bounded_time(lan: LanLab, tmp_path: Path) -> None:
    """A receiver started before the sender finds it once announced; with no sender at all
    it gives up after --wait and says what to do across networks."""
    code = "77-apple-acorn"
    (tmp_path / "early.txt").write_text("early bird")
    receiver = lan.cli("b2", "receive", code, "--yes", "--wait", "30", "-o", str(tmp_path / "o"))
    lonely = lan.cli("a2", "receive", "78-apple-acorn", "--wait", "1.5")
    time.sleep(1.0)  # the receiver is looking before the sender exists
    sender = lan.cli("b1", "send", str(tmp_path / "early.txt"), "--code", code)
    assert sender.wait() == 0, sender.err()
    assert receiver.wait() == 0, receiver.err()
    assert (tmp_path / "o" / "early.txt").read_text() == "early bird"
    started = time.monotonic()
    assert lonely.wait(timeout=20) == 1
    assert lonely.err().strip() == (
        "peerpy receive: error: no sender with code 78-apple-acorn on this network; across "
        "networks both sides need a broker: --server URL (your own: docs/deploy.md) "
        "or --server peerjs"
    )
    assert time.monotonic() - started < 15


def test_interrupted_sender_withdraws_its_announcement(lan: LanLab, tmp_path: Path) -> None:
    """Ctrl-C ends the broker and the announcement: a receiver then finds nobody; the
    embedded broker admits only the ids of its transfer meanwhile."""
    (tmp_path / "f.txt").write_text("x")
    sender = lan.cli("a1", "send", str(tmp_path / "f.txt"), "--code", "91-lemon-lily")
    sender.code()
    listening = lan.listening("a1")
    ports = {a.rsplit(":", 1)[1] for a in listening}
    assert len(ports) == 1, f"not the sender's broker alone: {listening}"
    (port,) = ports
    url = f"ws://{lan.addresses['a1']}:{port}/peerjs?key=peerjs&token=t&id="
    probe = (
        "import asyncio, sys\n"
        "from websockets.asyncio.client import connect\n"
        "async def main():\n"
        "    async with connect(sys.argv[1]) as ws:\n"
        "        print(await asyncio.wait_for(ws.recv(), 5))\n"
        "asyncio.run(main())\n"
    )
    refused = lan.lab.exec("a2", [sys.executable, "-c", probe, url + "intruder"])
    assert json.loads(refused) == {"type": "ERROR", "payload": {"msg": 'ID "intruder" is invalid'}}
    receiver_id = "peerpy-xfer-91-r" + "0" * 16  # the form of a receiver's id
    admitted = lan.lab.exec("a2", [sys.executable, "-c", probe, url + receiver_id])
    assert json.loads(admitted) == {"type": "OPEN"}
    sender.process.send_signal(signal.SIGINT)
    assert sender.wait() == 130
    assert lan.listening("a1") == []
    late = lan.cli("a2", "receive", "91-lemon-lily", "--wait", "1.5")
    assert late.wait(timeout=20) == 1
    assert "no sender with code 91-lemon-lily on this network" in late.err()


def test_failed_connection_shows_the_diagnosis_on_both_sides(lan: LanLab, tmp_path: Path) -> None:
    """A sender whose ICE may use loopback only cannot be reached from the LAN: both sides
    show the SDK's diagnosis (what each side gathered, the likely fix)."""
    (tmp_path / "f.txt").write_text("x")
    sender = lan.cli("b1", "send", str(tmp_path / "f.txt"), "--ice-addresses", "127.0.0.1")
    code = sender.code()
    receiver = lan.cli("b2", "receive", code, "--yes", "-o", str(tmp_path / "out"))
    assert receiver.wait(timeout=60) == 1
    assert "could not connect to the other side" in receiver.err(), receiver.err()
    assert "ICE candidates here:" in receiver.err()
    # The sender hears of it when the receiver's half-open connection times out (10 s).
    wait_for(lambda: "ICE candidates here:" in sender.err(), 20, "the sender's diagnosis")
    assert "peerpy send: a receiver could not connect: ICE candidates here:" in sender.err()
    for side in (sender, receiver):
        assert "ICE servers: none." in side.err()
    assert sender.process.poll() is None  # it still waits for a receiver that can connect
    Lab.stop(sender.process)


def test_chat_meets_on_the_lan(lan: LanLab) -> None:
    """``peerpy chat alice`` hosts and announces; ``peerpy chat bob alice`` finds it."""
    alice = lan.cli("a1", "chat", "alice", stdin=subprocess.PIPE)
    wait_for(lambda: "waiting for someone" in alice.out(), 20, "alice waiting")
    bob = lan.cli("a2", "chat", "bob", "alice", stdin=subprocess.PIPE)
    assert bob.process.stdin is not None
    bob.process.stdin.write(b"hello over the LAN\n")
    bob.process.stdin.close()  # bob leaves after his line
    wait_for(lambda: "bob: hello over the LAN" in alice.out(), 30, "bob's line at alice")
    wait_for(lambda: "* bob left" in alice.out(), 20, "bob leaving")
    assert bob.wait() == 0, bob.err()
    assert alice.wait() == 0, alice.err()
