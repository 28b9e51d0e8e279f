"""Markdown tables in the docs render as tables: no table split by a blank line.

A blank line inside a table ends it; the rows after it have no header and
separator, so Markdown shows them as a paragraph of pipes (docs/cli.md's
``receive`` options once lost ``--stdout`` that way).  Every run of table rows
outside code fences must start with a header row and a ``| --- |`` separator.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
_SEPARATOR = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+\s*$")


def broken_tables(text: str) -> list[int]:
    """Line numbers (1-based) of table rows that start a table without header and separator."""
    problems = []
    lines = text.splitlines()
    fenced = False
    block: list[int] = []  # indexes of the current run of table rows
    for index, line in enumerate([*lines, ""]):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        is_row = not fenced and line.startswith("|")
        if is_row:
            block.append(index)
            continue
        if block:
            second = lines[block[1]] if len(block) > 1 else ""
            if not _SEPARATOR.match(second):
                problems.append(block[0] + 1)
            block = []
    return problems


def test_the_check_finds_a_table_split_by_a_blank_line() -> None:
    whole = "| option | meaning |\n| --- | --- |\n| `-y` | yes |\n| `-o` | out |\n"
    split = "| option | meaning |\n| --- | --- |\n| `-y` | yes |\n\n| `-o` | out |\n"
    assert broken_tables(whole) == []
    assert broken_tables(split) == [5]
    assert broken_tables("```\n| not | a table |\n```\n") == []


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_table_is_split(page: Path) -> None:
    found = broken_tables(page.read_text(encoding="utf-8"))
    assert found == [], f"{page.relative_to(ROOT)}: table rows without a header at lines {found}"
