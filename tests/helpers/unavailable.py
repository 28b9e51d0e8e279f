"""What a test does when something it needs is missing here: skip, but never in CI.

CI (``CI=true``) installs everything the suite needs (``scripts/setup``), so a
missing piece there is a broken set-up, not a reason to skip: the test fails
and says what is missing.  On a developer's machine it is skipped with the
same reason.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["unavailable"]


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it when running in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but this test cannot run: {reason}")
    pytest.skip(reason)
