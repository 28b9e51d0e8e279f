"""PeerJS's debug option (peerpy.logs): 0-3 set the ``peerpy`` logger's level."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from peerpy.exceptions import ConfigurationError
from peerpy.logs import set_debug


@pytest.fixture
def peerpy_logger() -> Iterator[logging.Logger]:
    """The ``peerpy`` logger, its level and handlers restored afterwards."""
    logger = logging.getLogger("peerpy")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.mark.parametrize(
    ("debug", "shown", "hidden"),
    [
        (0, None, logging.CRITICAL),
        (1, logging.ERROR, logging.WARNING),
        (2, logging.WARNING, logging.INFO),
        (3, logging.DEBUG, None),
    ],
)
def test_debug_levels_map_to_logging_levels(
    peerpy_logger: logging.Logger, debug: int, shown: int | None, hidden: int | None
) -> None:
    """0 nothing, 1 errors, 2 warnings and errors, 3 everything, as PeerJS prints them."""
    set_debug(debug)
    child = logging.getLogger("peerpy.peer")
    if shown is not None:
        assert child.isEnabledFor(shown)
    if hidden is not None:
        assert not child.isEnabledFor(hidden)


def test_debug_none_leaves_logging_alone(peerpy_logger: logging.Logger) -> None:
    """The default changes no level and adds no handler."""
    peerpy_logger.setLevel(logging.INFO)
    set_debug(None)
    assert peerpy_logger.level == logging.INFO


def test_debug_shows_records_when_nothing_else_would(
    peerpy_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no handler anywhere, one stderr handler is added (PeerJS prints); only once."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    peerpy_logger.handlers[:] = []
    set_debug(3)
    set_debug(2)
    assert [type(h) for h in peerpy_logger.handlers] == [logging.StreamHandler]


@pytest.mark.parametrize("debug", [-1, 4, "3", 2.0, True])
def test_other_debug_values_are_refused(debug: object) -> None:
    """Anything but the ints 0-3 is a ConfigurationError naming the accepted values."""
    with pytest.raises(ConfigurationError, match="0, 1, 2 or 3"):
        set_debug(debug)  # type: ignore[arg-type]
