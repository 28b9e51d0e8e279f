"""The user pages say how things work now: no commit hashes, no scripts that are not here.

Measurement history, the commits it was measured on and the one-off reproduction scripts
of the issues belong to docs/performance.md and docs/changelog.md; docs/development.md is
for developers. Every other page in docs/ is a user page.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..helpers.brokers import ROOT

DOCS = ROOT / "docs"
NOT_USER_PAGES = {"performance.md", "changelog.md", "development.md"}

# 7 to 40 hex digits standing alone, with at least one digit and one letter: a
# short or full commit hash. Numbers (4194304) and words (defaced) do not count.
HEX_TOKEN = re.compile(r"(?<![\w-])[0-9a-f]{7,40}(?![\w-])")
# A file name ending in .sh or .py, with the path written before it.
SCRIPT = re.compile(r"[\w:./*-]*\.(?:sh|py)\b")
SKIPPED_DIRS = {"node_modules", "site", "__pycache__"}


def user_pages() -> list[Path]:
    """Every docs/*.md but performance, changelog and development."""
    return sorted(path for path in DOCS.glob("*.md") if path.name not in NOT_USER_PAGES)


def commit_hashes(text: str) -> list[str]:
    """The tokens of `text` that look like commit hashes."""
    return [
        token
        for token in HEX_TOKEN.findall(text)
        if re.search(r"[0-9]", token) and re.search(r"[a-f]", token)
    ]


def repository_files() -> set[str]:
    """The repository's .sh and .py files, as paths relative to its root (no venv, no
    node_modules, nothing hidden)."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS]
        relative = Path(folder).relative_to(ROOT)
        found.update(
            (relative / name).as_posix() for name in files if name.endswith((".sh", ".py"))
        )
    return found


def missing_scripts(text: str, files: set[str]) -> list[str]:
    """The .sh/.py names in `text` that match no file of `files`: a name with a folder
    must be the end of a file's path, a bare name some file's name. URLs and globs are
    left alone."""
    names = {path.rsplit("/", 1)[-1] for path in files}
    missing = []
    for token in SCRIPT.findall(text):
        name = token.removeprefix("./").lstrip(":")
        if "://" in token or "*" in name:
            continue
        if "/" in name.strip("/"):
            stripped = name.lstrip("/")
            if not any(path == stripped or path.endswith("/" + stripped) for path in files):
                missing.append(token)
        elif name.lstrip("/") not in names:
            missing.append(token)
    return missing


def test_the_checks_catch_hashes_and_foreign_scripts() -> None:
    """The detectors find a short hash and a script that is not in the repository, and
    leave numbers, words, URLs and the repository's own scripts alone."""
    files = {"bench/broker_load.py", "scripts/test", "tests/unit/test_docs_history.py"}
    assert commit_hashes("before (commit d3973e2), 2b9d5e4.") == ["d3973e2", "2b9d5e4"]
    assert commit_hashes("4194304 bytes, a defaced value, 1764400000:alice") == []
    text = "run `run_xbomb.sh 3` or `python bench/broker_load.py`, see peerpy_server/resp.py"
    assert missing_scripts(text, files) == ["run_xbomb.sh", "peerpy_server/resp.py"]
    assert missing_scripts("https://example.org/x.py and tests/*/test_a.py", files) == []
    assert missing_scripts("test_docs_history.py", files) == []


def test_user_pages_name_no_commit_hash() -> None:
    """No user page names a commit: the state it describes is the code next to it."""
    found = {
        f"{page.name}:{number}: {token}"
        for page in user_pages()
        for number, line in enumerate(page.read_text().splitlines(), 1)
        for token in commit_hashes(line)
    }
    assert found == set(), "move commit hashes to performance.md or changelog.md"


def test_user_pages_name_only_scripts_of_this_repository() -> None:
    """Every .sh/.py file a user page names exists in the repository (one-off
    reproduction scripts are named only in changelog.md, as not being here)."""
    files = repository_files()
    found = {
        f"{page.name}:{number}: {token}"
        for page in user_pages()
        for number, line in enumerate(page.read_text().splitlines(), 1)
        for token in missing_scripts(line, files)
    }
    assert found == set(), "name only scripts that are in the repository"
