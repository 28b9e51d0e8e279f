"""A real Janus (Debian's ``janus``) for the SFU tests: loopback only, free ports, stopped by PID.

:class:`JanusServer` writes its own configuration folder: the VideoRoom plugin
and the WebSocket transport only (every other plugin and transport of the
package disabled), the WebSocket API on a free 127.0.0.1 port, ICE on one
127.0.0.0/8 address only, no STUN server, the Admin API off, and the
VideoRoom ``admin_key`` set so that only the broker (which is given the key)
can create rooms.

Janus never gathers ICE candidates on a loopback *interface* (it skips
``IFF_LOOPBACK`` ones), so each server gets a veth pair of its own in the
test's network namespace, ``pjj<port>a``/``pjj<port>b``, with one address in
127.0.0.0/8 (``127.77.<port / 256>.<port % 256>``) that Janus is told to use
alone: its media stays on this host's loopback range, reachable from peers
bound to 127.0.0.1.  libnice sends out of the interface its candidate is on
(``IP_UNICAST_IF``), so the packets to 127.0.0.1 cross the pair: the two ends
(and only they) get ``route_localnet=1``, ``rp_filter=0`` and
``accept_local=1``.  The pair is deleted with the server (root needed, as for
the other lab tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .brokers import free_port, wait_listening

__all__ = ["JANUS", "JanusServer", "running_janus"]

#: The janus binary, or None when it is not installed (scripts/setup installs it as root).
JANUS = shutil.which("janus")
LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
#: The VideoRoom admin key the tests' Janus requires to create rooms.
ADMIN_KEY = "peerpy-tests-admin-key"


def _others(folder: Path, keep: str) -> str:
    """Every ``.so`` in ``folder`` but ``keep``, comma-separated (Janus's ``disable`` list)."""
    if not folder.is_dir():
        return ""
    names = sorted(p.name for p in folder.glob("libjanus_*.so") if p.name != keep)
    return ",".join(names)


class JanusServer:
    """One Janus process on a free loopback port (see the module docstring)."""

    def __init__(self, *, admin_key: str = ADMIN_KEY) -> None:
        self.port = free_port()
        self.ice_ip = f"127.77.{self.port >> 8}.{self.port & 255}"
        self._link = f"pjj{self.port}a"
        self.admin_key = admin_key
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="peerpy-janus-"))
        self.log = self._dir / "janus.log"
        self._write_config()

    @property
    def url(self) -> str:
        """Its WebSocket API."""
        return f"ws://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        folder = self._dir
        plugins = _others(LIBDIR / "plugins", "libjanus_videoroom.so")
        transports = _others(LIBDIR / "transports", "libjanus_websockets.so")
        (folder / "janus.jcfg").write_text(
            "general: {\n"
            f'  configs_folder = "{folder}"\n'
            f'  plugins_folder = "{LIBDIR}/plugins"\n'
            f'  transports_folder = "{LIBDIR}/transports"\n'
            f'  events_folder = "{LIBDIR}/events"\n'
            f'  loggers_folder = "{LIBDIR}/loggers"\n'
            "  debug_level = 4\n"
            "  session_timeout = 30\n"
            "}\n"
            'media: {\n  rtp_port_range = "20000-60000"\n}\n'
            f'nat: {{\n  ice_enforce_list = "{self.ice_ip}"\n  ignore_mdns = true\n}}\n'
            f'plugins: {{\n  disable = "{plugins}"\n}}\n'
            f'transports: {{\n  disable = "{transports}"\n}}\n'
            f'events: {{\n  broadcast = false\n  disable = "{_others(LIBDIR / "events", "")}"\n}}\n'
            f'loggers: {{\n  disable = "{_others(LIBDIR / "loggers", "")}"\n}}\n'
        )
        (folder / "janus.transport.websockets.jcfg").write_text(
            "general: {\n"
            '  json = "compact"\n'
            "  ws = true\n"
            f"  ws_port = {self.port}\n"
            '  ws_ip = "127.0.0.1"\n'
            "  wss = false\n"
            "}\n"
            "admin: {\n  admin_ws = false\n  admin_wss = false\n}\n"
        )
        (folder / "janus.plugin.videoroom.jcfg").write_text(
            f'general: {{\n  admin_key = "{self.admin_key}"\n}}\n'
        )

    def _add_link(self) -> None:
        """The veth pair Janus gathers its ICE candidate on (see the module docstring)."""
        if subprocess.run(["ip", "link", "show", self._link], capture_output=True).returncode == 0:
            return
        ends = (self._link, f"pjj{self.port}b")
        commands = [
            ["ip", "link", "add", ends[0], "type", "veth", "peer", "name", ends[1]],
            ["ip", "addr", "add", f"{self.ice_ip}/32", "dev", ends[0]],
        ]
        for end in ends:  # these two interfaces only: 127/8 on them, sources that are ours
            commands.append(["sysctl", "-qw", f"net.ipv4.conf.{end}.route_localnet=1",
                             f"net.ipv4.conf.{end}.rp_filter=0", f"net.ipv4.conf.{end}.accept_local=1"])  # fmt: skip # noqa: E501
            commands.append(["ip", "link", "set", end, "up"])
        for argv in commands:
            subprocess.run(argv, check=True, capture_output=True)

    def start(self) -> None:
        """Start Janus and wait until its WebSocket API listens."""
        assert JANUS is not None, "janus is not installed"
        self._add_link()
        argv = [JANUS, "-C", str(self._dir / "janus.jcfg"), "-F", str(self._dir),
                "-L", str(self.log), "-N"]  # fmt: skip
        with open(self._dir / "output.log", "ab") as output:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            wait_listening(self.port, timeout=15)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"janus did not start; its log: {self.log_text()[-2000:]}") from None

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def kill(self) -> None:
        """SIGKILL it (by PID) and wait for it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self) -> None:
        """Start it again on the same port (after :meth:`kill`)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # by PID: this process only
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def remove(self) -> None:
        self.stop()
        subprocess.run(["ip", "link", "del", self._link], capture_output=True)
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def running_janus() -> Iterator[JanusServer]:
    """A started :class:`JanusServer`, stopped (by PID) and its folder removed on the way out."""
    server = JanusServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()
