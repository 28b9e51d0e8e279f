"""The documentation: every page is reachable, and the quickstart shows the real chat example."""

from __future__ import annotations

import re

import yaml

from ..helpers.brokers import ROOT

DOCS = ROOT / "docs"


def nav_pages(node: object) -> set[str]:
    """Every page file named in mkdocs.yml's nav."""
    if isinstance(node, str):
        return {node}
    if isinstance(node, list):
        return set().union(*(nav_pages(item) for item in node))
    if isinstance(node, dict):
        return set().union(*(nav_pages(value) for value in node.values()))
    return set()


def test_every_page_is_in_the_index_and_the_nav() -> None:
    """Each docs/*.md is linked from index.md and listed in mkdocs.yml's nav."""
    pages = {path.name for path in DOCS.glob("*.md")}
    index = (DOCS / "index.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)(?:#[\w-]*)?\)", index))
    nav = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert pages - {"index.md"} - linked == set(), "pages not linked from docs/index.md"
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"


def test_quickstart_chat_snippet_is_examples_chat() -> None:
    """The quickstart's chat code is examples/chat.py's, line for line (less lint comments)."""
    example = (ROOT / "examples" / "chat.py").read_text()
    code = example.split('"""', 2)[2].strip()
    code = re.sub(r"  # (noqa|fmt)[^\n]*", "", code)
    quickstart = (DOCS / "quickstart.md").read_text()
    section = quickstart.split("## Chat between two terminals", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0].strip()
    assert snippet == code


def test_install_instructions_work_from_a_checkout() -> None:
    """Nothing is published: no page says `pip install peerpy-sdk` (or -server...), and the
    install sections warn that PyPI's `peerpy` is another project."""
    pages = [ROOT / "README.md", *DOCS.glob("*.md")]
    for path in pages:
        for line in path.read_text().splitlines():
            assert not re.search(r"pip install '?peerpy-", line), f"{path.name}: {line}"
    for path in (ROOT / "README.md", DOCS / "quickstart.md"):
        assert "installs another project" in path.read_text(), path.name
