"""The three distributions: a broker install pulls no WebRTC or media package.

``peerpy-protocol`` (protocol/) holds the protocol core; ``peerpy-sdk`` (the
checkout's root) and ``peerpy-server`` (server/) both pin it exactly.  These
tests read the pyproject files and the installed metadata, run the broker in a
process that cannot import the SDK nor any media or WebRTC package, and (when
hatchling is installed, as scripts/setup does) build and install the wheels
into a fresh virtualenv without the network.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..helpers.offers import data_offer, offer_frame

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECTS = {
    "peerpy-sdk": ROOT / "pyproject.toml",
    "peerpy-protocol": ROOT / "protocol" / "pyproject.toml",
    "peerpy-server": ROOT / "server" / "pyproject.toml",
}

#: Distributions a broker install must not pull: media, WebRTC, and the SDK itself.
HEAVY = {"aiortc", "aioice", "av", "numpy", "wrtc", "pylibsrtp", "pyee", "peerpy-sdk"}

#: Import names the lean broker process refuses (the SDK's import package is ``peerpy``);
#: uvloop too, an extra of the broker (``peerpy-server[uvloop]``), not a dependency.
REFUSED = (
    "aiortc", "aioice", "av", "numpy", "webrtc", "peerpy", "pylibsrtp", "pyee", "cv2", "uvloop",
)  # fmt: skip


def project(dist: str) -> dict[str, Any]:
    with PYPROJECTS[dist].open("rb") as file:
        table: dict[str, Any] = tomllib.load(file)["project"]
    return table


def requirements_of(dist: str, extras: frozenset[str]) -> list[Requirement]:
    """The requirements of ``dist`` (with ``extras``) that apply on this platform.

    Our own distributions are read from their pyproject files (the truth in
    this checkout); third-party ones from their installed metadata.
    """
    if dist in PYPROJECTS:
        table = project(dist)
        texts = list(table.get("dependencies", []))
        for extra in extras:
            texts += table.get("optional-dependencies", {}).get(extra, [])
    else:
        try:
            texts = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{dist} is not installed: run scripts/setup")
    wanted = []
    for text in texts:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in ("", *extras)):
            wanted.append(requirement)
    return wanted


def closure(dist: str, extras: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """Every distribution ``dist`` pulls in, each with who requires it."""
    required_by: dict[str, set[str]] = {}
    todo = [(dist, extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for requirement in requirements_of(name, wanted):
            child = str(canonicalize_name(requirement.name))
            required_by.setdefault(child, set()).add(name)
            todo.append((child, frozenset(requirement.extras)))
    return required_by


def heavy(names: Iterable[str]) -> set[str]:
    return {n for n in names if n in HEAVY or n.startswith("opencv")}


def test_server_dependency_closure_has_no_webrtc_or_media_package() -> None:
    """peerpy-server's whole dependency tree holds no aiortc, av, numpy, wrtc, … nor the SDK."""
    deps = closure("peerpy-server")
    assert "peerpy-protocol" in deps
    assert {"attrs", "orjson", "websockets"} <= deps.keys()  # the walk does reach the tree
    found = {name: sorted(deps[name]) for name in heavy(deps)}
    assert found == {}, f"pulled in by the broker install (name: required by): {found}"
    # The protocol core alone is smaller still.
    assert closure("peerpy-protocol").keys() <= {"attrs", "orjson"}


def test_sdk_closure_is_where_the_heavy_packages_are() -> None:
    """The check above can fail: the SDK's own tree does contain aiortc and av."""
    assert {"aiortc", "av", "numpy", "peerpy-protocol"} <= closure("peerpy-sdk").keys()
    # wrtc comes by default on this (x86_64 Linux CPython) machine, no extra needed.
    assert "wrtc" in closure("peerpy-sdk")


#: The platforms wrtc 0.1.0 ships wheels for (its files on the index: cp39-cp315 tags,
#: manylinux_2_27 x86_64/aarch64, macosx_13_0 arm64/x86_64, win_amd64), as marker
#: environments; peerpy takes CPython 3.10-3.14 of them.
_WHEEL_PLATFORMS = [
    {"sys_platform": "linux", "platform_machine": "x86_64", "platform_release": "6.1.0"},
    {"sys_platform": "linux", "platform_machine": "aarch64", "platform_release": "5.15.0"},
    {"sys_platform": "darwin", "platform_machine": "arm64", "platform_release": "23.4.0"},
    {"sys_platform": "darwin", "platform_machine": "x86_64", "platform_release": "22.1.0"},
    {"sys_platform": "win32", "platform_machine": "AMD64", "platform_release": "10"},
]
#: Environments without a wrtc wheel: pip would fail there (wrtc has no sdist).
_NO_WHEEL = [
    {"sys_platform": "win32", "platform_machine": "ARM64", "platform_release": "11"},
    {"sys_platform": "darwin", "platform_machine": "x86_64", "platform_release": "21.6.0"},
    {"sys_platform": "linux", "platform_machine": "armv7l", "platform_release": "6.1.0"},
    {"sys_platform": "freebsd14", "platform_machine": "amd64", "platform_release": "14.0"},
]


def _wrtc_requirement() -> Requirement:
    (wrtc,) = (
        Requirement(r)
        for r in project("peerpy-sdk")["dependencies"]
        if canonicalize_name(Requirement(r).name) == "wrtc"
    )
    return wrtc


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12", "3.13", "3.14"])
def test_sdk_brings_wrtc_where_its_wheels_exist(python: str) -> None:
    """``pip install peerpy-sdk`` pulls wrtc on each platform wrtc ships a wheel for."""
    wrtc = _wrtc_requirement()
    assert wrtc.marker is not None
    assert not wrtc.extras
    for platform in _WHEEL_PLATFORMS:
        env = {**platform, "python_version": python, "platform_python_implementation": "CPython"}
        assert wrtc.marker.evaluate(env), env


def test_sdk_leaves_wrtc_out_where_no_wheel_exists() -> None:
    """Elsewhere (no wheel, no sdist) the SDK installs with aiortc alone instead of failing."""
    marker = _wrtc_requirement().marker
    assert marker is not None
    cpython = {"python_version": "3.12", "platform_python_implementation": "CPython"}
    for platform in _NO_WHEEL:
        assert not marker.evaluate({**platform, **cpython}), platform
    linux = _WHEEL_PLATFORMS[0]
    assert not marker.evaluate({**linux, **cpython, "platform_python_implementation": "PyPy"})
    assert not marker.evaluate({**linux, **cpython, "python_version": "3.15"})
    # The extra stays, for asking for wrtc explicitly (an error where it cannot install).
    assert [
        str(r) for r in map(Requirement, project("peerpy-sdk")["optional-dependencies"]["wrtc"])
    ] == ["wrtc<0.2,>=0.1"]


def test_same_version_and_exact_pins() -> None:
    """The three pyprojects and packages carry one version; both pin the protocol exactly."""
    versions = {dist: project(dist)["version"] for dist in PYPROJECTS}
    assert len(set(versions.values())) == 1, versions
    version = versions["peerpy-protocol"]
    for dist in ("peerpy-sdk", "peerpy-server"):
        pins = [Requirement(r) for r in project(dist)["dependencies"]]
        protocol = [r for r in pins if canonicalize_name(r.name) == "peerpy-protocol"]
        assert [str(r.specifier) for r in protocol] == [f"=={version}"], dist
    server = {
        canonicalize_name(Requirement(r).name) for r in project("peerpy-server")["dependencies"]
    }
    assert "peerpy-sdk" not in server

    import peerpy_protocol
    import peerpy_server

    import peerpy

    assert peerpy.__version__ == peerpy_protocol.__version__ == peerpy_server.__version__ == version


def test_one_exception_root_for_sdk_and_broker() -> None:
    """The SDK's names are the protocol core's classes, so one ``except`` catches both."""
    import peerpy_protocol.exceptions

    import peerpy
    import peerpy.exceptions

    assert peerpy.PeerError is peerpy.exceptions.PeerError is peerpy_protocol.exceptions.PeerError
    assert peerpy.exceptions.ProtocolError is peerpy_protocol.exceptions.ProtocolError
    assert issubclass(peerpy.exceptions.DecodeError, peerpy_protocol.exceptions.ProtocolError)
    assert peerpy.exceptions.InvalidIdError("x").type == "invalid-id"


# -- the broker runs without the SDK ------------------------------------------

LEAN_BROKER = """
import atexit, importlib.abc, json, runpy, sys

REFUSED = {refused!r}
attempts = []


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            attempts.append(name)
            raise ModuleNotFoundError(f"{{name}} is refused in a lean broker", name=name)
        return None


sys.meta_path.insert(0, Refuse())
atexit.register(lambda: print("refused:", json.dumps(sorted(set(attempts))), file=sys.stderr))
sys.argv = ["peerpy-server", *sys.argv[1:]]
runpy.run_module("peerpy_server", run_name="__main__", alter_sys=True)
"""


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next line of the process's stdout, within ``timeout`` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no output within {timeout} s")
    return process.stdout.readline()


def test_broker_runs_without_sdk_media_or_webrtc(tmp_path: Path) -> None:
    """With aiortc, av, numpy, wrtc, uvloop and the SDK unimportable, ``python -m
    peerpy_server`` starts, registers two clients (OPEN) and relays an OFFER between them."""
    from websockets.sync.client import connect

    code = LEAN_BROKER.format(refused=REFUSED)
    argv = [sys.executable, "-c", code, "--host", "127.0.0.1", "--port", "0", "--path", "/"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        argv,
        cwd=tmp_path,  # not the checkout: its peerpy/ directory must not matter
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(process, timeout=30)
        assert line.startswith("Started PeerServer"), line + process.communicate(timeout=10)[1]
        port = int(line.split("port: ")[1].split(",")[0])
        url = f"ws://127.0.0.1:{port}/peerjs?key=peerjs"
        payload = data_offer("v=0", "dc_1").to_json()
        with (
            connect(f"{url}&id=lean-a&token=ta", open_timeout=10) as a,
            connect(f"{url}&id=lean-b&token=tb", open_timeout=10) as b,
        ):
            assert json.loads(a.recv(timeout=10)) == {"type": "OPEN"}
            assert json.loads(b.recv(timeout=10)) == {"type": "OPEN"}
            a.send(offer_frame("lean-b", data_offer("v=0", "dc_1")))
            relayed = json.loads(b.recv(timeout=10))
        assert relayed == {"type": "OFFER", "src": "lean-a", "dst": "lean-b", "payload": payload}
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        refused = [line for line in err.splitlines() if line.startswith("refused:")]
        assert len(refused) == 1, err
        # The SDK is not even tried (optional imports of the others would be fine).
        attempts = json.loads(refused[0].split(":", 1)[1])
        assert [name for name in attempts if name.split(".")[0] == "peerpy"] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- installing the wheels offline ----------------------------------------------


def run(*argv: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_wheels_install_offline_into_a_fresh_virtualenv(tmp_path: Path) -> None:
    """The built protocol and server wheels install with ``--no-index``; the server's
    metadata pins the protocol (satisfied) and names no heavy package."""
    pytest.importorskip("hatchling", reason="scripts/setup installs hatchling (the build backend)")
    wheels = tmp_path / "wheels"
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-index", "--no-deps", "--no-build-isolation",
        "--wheel-dir", wheels, ROOT / "protocol", ROOT / "server",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    files = sorted(p.name for p in wheels.glob("*.whl"))
    assert [f.split("-")[0] for f in files] == ["peerpy_protocol", "peerpy_server"], files

    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check")
    installed = run(*pip, "install", "--no-index", "--no-deps", *sorted(wheels.glob("*.whl")))
    assert installed.returncode == 0, installed.stderr

    # What the fresh environment records: the pin, and no SDK.
    shown = run(
        python,
        "-c",
        "import importlib.metadata as m, json; print(json.dumps(m.requires('peerpy-server')))",
    )
    assert shown.returncode == 0, shown.stderr
    requires = [Requirement(text) for text in json.loads(shown.stdout)]
    names = {str(canonicalize_name(r.name)) for r in requires}
    assert "peerpy-protocol==0.1.0" in [str(r) for r in requires]
    assert heavy(names) == set()

    # pip check: only third-party dependencies are missing (installed --no-deps), never
    # peerpy-protocol, whose exact pin the protocol wheel satisfies.
    checked = run(*pip, "check")
    missing = set()
    for line in checked.stdout.splitlines():
        if "which is not installed" in line:
            missing.add(str(canonicalize_name(line.split(" requires ")[1].split(",")[0])))
        else:
            assert "peerpy" not in line.lower(), checked.stdout
    assert missing, checked.stdout  # attrs, orjson, websockets... were not installed
    assert "peerpy-protocol" not in missing
    assert heavy(missing) == set()


def test_extras_named_in_the_docs_exist() -> None:
    """Every ``peerpy-…[extra]`` the README, docs or code mention is defined (no phantom
    ``peerpy-server[speed]``)."""
    pattern = re.compile(r"\b(peerpy-(?:sdk|server|protocol))\[([A-Za-z0-9_,-]+)\]")
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    for directory in ("peerpy", "server", "protocol", "bench", "examples", "tests"):
        files += (ROOT / directory).glob("**/*.py")
    named: dict[tuple[str, str], Path] = {}
    for path in files:
        if "node_modules" in path.parts or path == Path(__file__):
            continue
        for dist, extras in pattern.findall(path.read_text(encoding="utf-8")):
            for extra in extras.split(","):
                named[(dist, extra)] = path
    assert ("peerpy-sdk", "wrtc") in named  # the scan does find the extras in use
    missing = {
        f"{dist}[{extra}] in {path.relative_to(ROOT)}"
        for (dist, extra), path in named.items()
        if extra not in project(dist).get("optional-dependencies", {})
    }
    assert missing == set()
