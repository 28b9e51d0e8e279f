"""Fixtures of the SFU tests: real Janus processes (see tests/helpers/janus_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ...helpers.janus_support import JANUS, JanusServer, running_janus


@pytest.fixture
def janus() -> Iterator[JanusServer]:
    """A real Janus on a free loopback port, stopped by PID after the test."""
    if JANUS is None:
        pytest.fail("janus is missing: run scripts/setup (Debian's janus)")
    with running_janus() as server:
        yield server
