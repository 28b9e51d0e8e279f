"""Folder trees for tests: very deep, very long names, and their removal.

``shutil.rmtree`` and ``os.walk`` recurse once per level before Python 3.12, so a
tree 1 200 deep is made and removed here without recursion (pytest's own clean-up
of old temporary folders would hit RecursionError on it).
"""

from __future__ import annotations

import os
from pathlib import Path


def make_deep_folder(top: Path, depth: int) -> Path:
    """``top/a/a/.../a/f`` with ``depth`` folders ``a`` (xfer_deep_folder.sh); returns ``top``."""
    folder = top
    folder.mkdir()
    for _ in range(depth):  # Path.mkdir(parents=True) recurses once per missing folder
        folder = folder / "a"
        folder.mkdir()
    (folder / "f").write_text("x")
    return top


def remove_tree(top: Path) -> None:
    """Remove ``top`` and everything under it, depth first, without recursion."""
    stack = [top]
    while stack:
        folder = stack[-1]
        with os.scandir(folder) as entries:
            subfolders = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        if subfolders:
            stack.extend(subfolders)
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                os.unlink(entry.path)
        folder.rmdir()
        stack.pop()


def long_names(root: Path, nbytes: int) -> Path:
    """A folder whose manifest takes over ``nbytes``: files with ~3 800-character paths."""
    top = root / "long"
    inner = top.joinpath(*[f"{i:02}" + "d" * 248 for i in range(14)])
    inner.mkdir(parents=True)
    path_chars = len(str(inner.relative_to(root))) + 255
    for i in range(nbytes // path_chars + 1):
        (inner / (f"{i:05}" + "f" * 250)).touch()
    return top
