"""``hybridnb --help`` and every command's ``-h``: sorted, every option explained, no type
placeholders such as ``<bool>``."""

from __future__ import annotations

import re

import pytest

from hybridnb.cli import _typer_command, main
from hybridnb.cli.app import app


def _commands(command, path=()):
    """(path, command) for the root and every command below it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


ALL = list(_commands(_typer_command(app)))


def test_every_command_and_parameter_has_help():
    missing = []
    for path, command in ALL:
        name = " ".join(("hybridnb", *path))
        if not (command.help or command.short_help):
            missing.append(f"{name}: the command")
        for param in command.params:
            if not getattr(param, "help", None):
                missing.append(f"{name}: {param.opts or param.name}")
    assert missing == [], "give these help text:\n" + "\n".join(missing)


def test_commands_are_listed_sorted(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^│ ([a-z][a-z-]+) ", out.split("Commands")[1], re.MULTILINE)
    assert len(listed) >= 15 and listed == sorted(listed)
    for path, command in ALL:
        subs = list(getattr(command, "commands", {}))
        assert subs == sorted(subs), path


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "root")
def test_help_has_no_type_placeholders(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out
    assert not re.findall(r"<[a-z_\[\]|,]+>", out), out


def test_run_help_documents_parameters_and_output(capsys):
    assert main(["run", "-h"]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "OUTPUT | -p NAME VALUE" in out
    assert "where the executed notebook goes" in out and "-p NAME VALUE (or --parameter)" in out
    assert "--allow-unknown-parameters" in out and "--timeout SECONDS" in out
