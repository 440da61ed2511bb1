"""``python -m harness.load URL [OPTIONS]``: the ``spike load`` command under another name.

The options, their help, their checks and the exit statuses are declared once,
in ``harness/cli.py`` (the ``load`` command); this runs that very command, so
``python -m harness.load --help`` and ``spike load --help`` say the same.
"""

from __future__ import annotations

import typer
from typer.core import TyperCommand, TyperGroup

from harness.cli import app

__all__ = ["load_command", "main"]


def load_command() -> TyperCommand:
    """The ``load`` command of the ``spike`` app, as a command that can run on its own."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    command = group.commands["load"]
    assert isinstance(command, TyperCommand)
    return command


def main() -> None:
    """Run ``spike load`` as ``python -m harness.load``; exits with its status (see ``--help``)."""
    load_command().main(prog_name="python -m harness.load")


if __name__ == "__main__":
    main()
