"""What every command shares: the options given before the command, and output helpers."""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from ..config import HybridConfig


@dataclass
class Options:
    """Global options: extra config files, ``--set`` overrides, debug."""

    files: list[Path] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    debug: bool = False

    def config(self) -> HybridConfig:
        from ..config import load_config

        return load_config(*self.files, overrides=self.overrides)

    def for_children(self) -> AbstractContextManager[Path | None]:
        """Hand ``--config``/``--set`` to the processes started inside the ``with``
        (notebook kernels): see :mod:`hybridnb.config.handoff`. A bad layer is reported
        here, before anything starts."""
        from ..config.handoff import config_for_children

        self.config()
        return config_for_children(self.files, self.overrides)


def options(ctx: typer.Context) -> Options:
    root = ctx.find_root()
    if not isinstance(root.obj, Options):
        root.obj = Options()
    return root.obj


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["sites.local.capacity.cpu=4"]`` → ``{"sites.local.capacity.cpu": 4}`` (YAML values)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. "
                             "--set sites.local.capacity.cpu=4")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    return out


def console() -> Console:
    from rich.console import Console

    # Wide enough that tables do not wrap in CI logs and pipes.
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a table of plain values."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console().print(t)
