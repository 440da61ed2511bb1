"""harness.complexity: lines of an option's POC code, including harness code its server runs on."""

from __future__ import annotations

import pytest

from harness.complexity import count_lines, measure
from harness.plugin import Option


def test_comments_and_blank_lines_do_not_count(tmp_path):
    f = tmp_path / "a.py"
    f.write_text("# a comment\n\nx = 1\n  # indented comment\ny = 2\n")
    assert count_lines(f) == 2


def test_a_path_outside_the_package_counts_and_keeps_its_relative_form(tmp_path):
    pkg = tmp_path / "spikes" / "s01"
    (pkg / "poc").mkdir(parents=True)
    (pkg / "poc" / "server.py").write_text("a = 1\nb = 2\n")
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "guard.py").write_text("c = 3\n")
    got = measure(pkg, Option("x", "X", code_paths=("poc/server.py", "../../harness/guard.py")))
    assert got["files"] == {"poc/server.py": 2, "../../harness/guard.py": 1} and got["loc"] == 3


def test_a_declared_path_that_does_not_exist_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.py"):
        measure(tmp_path, Option("x", "X", code_paths=("missing.py",)))
