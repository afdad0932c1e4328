"""CI keeps the lint clean: `.ci/run` runs `make lint` as well as `make test`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_ci_runs_lint_and_tests():
    commands = _commands(ROOT / ".ci" / "run")
    assert "make lint" in commands and "make test" in commands, commands


def test_lint_target_runs_ruff_and_mypy():
    makefile = (ROOT / "Makefile").read_text()
    body = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert body is not None, "Makefile has no lint target"
    assert "ruff check" in body.group(1) and "mypy" in body.group(1), body.group(1)
