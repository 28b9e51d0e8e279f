"""The rules that keep the code's shape (docs/development.md, "A map of the code").

Each rule reads the sources as text or syntax trees: no import, no I/O beyond
reading the files.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "peerpy"
SERVER = ROOT / "server" / "peerpy_server"

#: The server modules that may import the whole Broker: the module itself, the
#: CLI and the ASGI app that build one, and the package's lazy public export.
MAY_IMPORT_BROKER = {"broker.py", "cli.py", "asgi.py", "__init__.py"}

#: The largest classes may hold this many lines (Peer and Cluster did ten jobs).
MAX_CLASS_LINES = 450


def sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imported_modules(path: Path) -> list[tuple[str, int, list[str]]]:
    """(module, relative level, names) of every import in ``path``."""
    found: list[tuple[str, int, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, 0, []) for alias in node.names)
    return found


def class_lines(path: Path, name: str) -> int:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef) and node.name == name:
            assert node.end_lineno is not None
            return node.end_lineno - node.lineno + 1
    raise AssertionError(f"no class {name} in {path}")


def test_only_the_wiring_modules_import_the_broker() -> None:
    """Sessions, transports, the core and the cluster see the broker through Protocols."""
    offenders = []
    for path in sources(SERVER):
        if path.parent == SERVER and path.name in MAY_IMPORT_BROKER:
            continue
        for module, _level, names in imported_modules(path):
            if module.split(".")[-1] == "broker" or "Broker" in names:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_only_the_realm_reads_its_client_table() -> None:
    """Everyone else uses ``Realm.client()`` / ``Realm.clients()``."""
    realm = SERVER / "core" / "realm.py"
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources(SERVER)
        if path != realm and re.search(r"realm\)?\._clients", path.read_text())
    ]
    assert offenders == []


def test_backend_differences_live_in_peerpy_backends() -> None:
    """No wrtc import and no backend test outside ``peerpy/backends/``."""
    backends = SDK / "backends"
    offenders = []
    for path in sources(SDK):
        if backends in path.parents:
            continue
        text = path.read_text()
        if "_is_wrtc" in text or "is_wrtc(" in text:
            offenders.append(f"{path.relative_to(ROOT)}: a backend test")
        for module, level, _names in imported_modules(path):
            if level == 0 and module.split(".")[0] in ("webrtc", "aioice"):
                offenders.append(f"{path.relative_to(ROOT)}: imports {module}")
    assert offenders == []


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (SDK / "peer.py", "Peer"),
        (SERVER / "cluster" / "instance.py", "Cluster"),
        (SERVER / "broker.py", "Broker"),
    ],
)
def test_the_central_classes_stay_small(path: Path, name: str) -> None:
    """New features get their own module and a delegating line, not a new job here."""
    assert class_lines(path, name) < MAX_CLASS_LINES
    if name == "Peer":
        assert len(path.read_text().splitlines()) < MAX_CLASS_LINES


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The import reader finds a relative import of the broker and a wrtc import."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..broker import Broker\nimport webrtc\n")
    assert imported_modules(bad) == [("broker", 2, ["Broker"]), ("webrtc", 0, [])]
