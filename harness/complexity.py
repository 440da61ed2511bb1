"""What the Complexity criterion reads: lines of each option's POC code and its dependencies, counted at run time.

The criterion itself (line-equivalents and their utility) is the decision layer's: ``harness.decide.model.complexity_part``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.plugin import Option

__all__ = ["count_lines", "measure"]

_COMMENT_PREFIXES = {".py": ("#",), ".proto": ("//",), ".js": ("//",), ".mjs": ("//",), ".ts": ("//",), ".svelte": ("//", "<!--")}


def count_lines(path: Path) -> int:
    """Lines of code: not blank, not a whole-line comment, not inside a Python docstring."""
    prefixes = _COMMENT_PREFIXES.get(path.suffix, ("#", "//"))
    n = 0
    in_doc: str | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if in_doc:
            if in_doc in line:
                in_doc = None
            continue
        if not line or line.startswith(prefixes):
            continue
        if path.suffix == ".py" and line[:3] in ('"""', "'''"):
            quote = line[:3]
            # A docstring that does not close on its own line runs until it does.
            if line.count(quote) == 1:
                in_doc = quote
            continue
        n += 1
    return n


def _files(root: Path, rel: str) -> list[Path]:
    p = root / rel
    if p.is_dir():
        return sorted(
            f
            for f in p.rglob("*")
            if f.is_file() and f.suffix in _COMMENT_PREFIXES and "node_modules" not in f.parts and "__pycache__" not in f.parts
        )
    return [p]


def measure(package_dir: Path, option: Option) -> dict[str, Any]:
    """Lines of code per file, their total, and the option's third-party dependencies."""
    files: dict[str, int] = {}
    for rel in option.code_paths:
        for f in _files(Path(package_dir), rel):
            if not f.is_file():
                raise FileNotFoundError(f"option {option.key!r} declares code path {rel!r}, which does not exist in {package_dir}")
            # A path outside the package (``../../harness/sio_server.py``: harness code the option's server runs on) keeps
            # its ``..`` form, so the document links it and the count includes it.
            files[Path(os.path.relpath(f, package_dir)).as_posix()] = count_lines(f)
    return {
        "files": files,
        "loc": sum(files.values()),
        "dependencies": list(option.dependencies),
        "dependency_count": len(option.dependencies),
    }
