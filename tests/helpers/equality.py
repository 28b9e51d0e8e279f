"""Strict equality for codec tests: 1 is not 1.0, True is not 1."""

from __future__ import annotations


def same(a: object, b: object) -> bool:
    """Equality that also compares types, recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
    return a == b
