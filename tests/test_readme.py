"""The README's `spike` examples run (scaled to --quick so the suite stays short).

Each example may exit 0, or with a status its own comment in the README names
(``# exit 1 on a regression``); any other status, and any traceback, fails the
test. The examples and their allowed statuses are read from the README text, so
the test follows the README when commands or flags are added.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from harness.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
runner = CliRunner()

pytestmark = pytest.mark.slow  # runs Spike 9 three times (quick profile)


@dataclass(frozen=True)
class Example:
    """One `spike ...` line of the README: its arguments and the exit statuses its comment allows."""

    line: str
    args: list[str]
    allowed: frozenset[int]


def allowed_exits(comment: str) -> frozenset[int]:
    """0, plus every status the README comment names as ``exit N``."""
    return frozenset({0, *(int(n) for n in re.findall(r"\bexit (?:status |code )?(\d+)\b", comment))})


def parse_examples(text: str) -> list[Example]:
    """The `spike` lines of the README's ```sh blocks (the ```text ones are for other machines)."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for raw in block.splitlines():
            code, _, comment = raw.partition("#")
            code = code.strip()
            if code.startswith("spike "):
                out.append(Example(raw.strip(), shlex.split(code)[1:], allowed_exits(comment)))
    return out


def test_the_parser_reads_commands_and_the_exit_statuses_their_comments_allow():
    text = "```sh\nspike compare a.json b.json   # exit 1 on a regression\nspike list  # registered spikes\nmake run\n```\n```text\nspike locust 6\n```\n"
    got = parse_examples(text)
    assert [(e.args, set(e.allowed)) for e in got] == [(["compare", "a.json", "b.json"], {0, 1}), (["list"], {0})]
    assert allowed_exits("exit status 3 when steps failed, exit 4 on bad data") == {0, 3, 4}


def _scaled(args: list[str], tmp_path: Path) -> list[str]:
    """An example made short enough for the suite: runs quick with one repeat, compare on two runs made here."""
    if args[0] == "run":
        if "--quick" not in args:
            args = [*args, "--quick"]  # the full profile is a benchmark, not a test
        return [*args, "--repeat", "1"]
    if args[0] == "compare":
        # The README's paths (results/runs/A.json, results/runs) stand for runs made here: the quick runs above,
        # wherever this version of the harness stores them. Options and real paths are kept as written.
        runs = sorted((p for p in tmp_path.rglob("*.json") if p.parent.name == "runs" and "quick" in p.name), key=lambda p: p.name)
        assert len(runs) >= 2, f"the README's runs stored fewer than two quick runs: {runs}"
        files = iter(runs)
        scaled = []
        for a in args:
            if a.startswith("-") or a == "compare" or Path(a).exists():
                scaled.append(a)
            else:
                scaled.append(str(next(files)) if a.endswith(".json") else str(runs[0].parent))
        return scaled
    return args


def test_every_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    examples = parse_examples(README.read_text(encoding="utf-8"))
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert examples and {e.args[0] for e in examples} <= commands, [e.line for e in examples]
    problems = []
    for ex in examples:
        args = _scaled(ex.args, tmp_path)
        if args[0] == "load":
            from tests.harness.load.servers import reference_server

            with reference_server("ws") as (port, _):
                args = [a.replace("8765", str(port)) for a in args]
                if "--duration" in args:
                    args[args.index("--duration") + 1] = "1"  # the example's 10 s, shortened
                res = runner.invoke(app, args)
        else:
            res = runner.invoke(app, args)
        # CliRunner turns an uncaught exception into exit 1 and keeps it in res.exception: a crash, whatever the status.
        crashed = res.exception is not None and not isinstance(res.exception, SystemExit)
        if crashed or "Traceback" in res.output or res.exit_code not in ex.allowed:
            problems.append(f"{ex.line!r} as {args}: exit {res.exit_code} (allowed {sorted(ex.allowed)}), {res.exception!r}\n{res.output}")
    assert not problems, "\n\n".join(problems)
    assert any(tmp_path.rglob("spike-09-*.md")), "no Spike 9 document was rendered"
