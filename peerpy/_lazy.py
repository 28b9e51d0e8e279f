"""Lazy public names: a package's module ``__getattr__`` that imports on first use.

``peerpy`` and ``peerpy.transfer`` export classes whose modules import anyio
and aiortc; :func:`lazy_names` loads each only when its name is first read, so
importing the package (or its pure modules) stays light.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``modules[name]`` is the submodule defining ``name``.

    The value found is stored in the package, so the next read is a plain attribute.
    """

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
