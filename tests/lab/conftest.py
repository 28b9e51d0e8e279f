"""The NAT lab as a fixture for the lab's test modules (see tests/lab/fixture.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from ..helpers.unavailable import unavailable
from .fixture import RunningLab, running_lab
from .netlab import lab_unavailable_reason


def _unavailable() -> str | None:
    reason = lab_unavailable_reason()
    if reason is None and shutil.which("turnserver") is None:
        reason = "the NAT lab needs coturn's `turnserver` (scripts/setup installs it as root)"
    return reason


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    """One lab for the module: a NAT of each kind, coturn and the broker in pub."""
    reason = _unavailable()
    if reason is not None:
        unavailable(reason)
    with running_lab() as running:
        yield running
