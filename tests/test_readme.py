"""The README's `spike` examples run (scaled to --quick so the suite stays short)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
runner = CliRunner()


def _examples() -> list[list[str]]:
    block = re.search(r"```sh\n(\. \.venv/bin/activate\n.*?)```", README.read_text(), re.S).group(1)
    cmds = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("spike "):
            cmds.append(shlex.split(line)[1:])
    return cmds


def test_every_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    examples = _examples()
    assert [e[0] for e in examples] == ["list", "run", "run", "run", "report", "compare", "doctor", "load"]
    for args in examples:
        if args[0] == "run" and "--quick" not in args:
            args = [*args, "--quick"]  # the full profile is a benchmark, not a test
        if args[0] == "run":
            args = [*args, "--repeat", "1"]
        if args[0] == "compare":
            runs = sorted((tmp_path / "results" / "runs").glob("*.json"))
            same_shape = [r for r in runs if "quick" in r.name]
            args = ["compare", str(same_shape[0]), str(same_shape[1])]
        if args[0] == "load":
            from tests.harness.load.servers import reference_server

            with reference_server("ws") as (port, _):
                args = [a.replace("8765", str(port)) for a in args]
                args[args.index("--duration") + 1] = "1"  # the example's 10 s, shortened
                res = runner.invoke(app, args)
            assert res.exit_code == 0, (args, res.output)
            continue
        res = runner.invoke(app, args)
        assert res.exit_code in (0, 1), (args, res.output)  # compare may find a (noisy) regression
    assert (tmp_path / "results" / "spike-09-message-protocol.md").is_file()
