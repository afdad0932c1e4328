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


def tidy(command: Any) -> Any:
    """Polish the help of ``command`` and every command below it, in place.

    - commands are listed sorted by name;
    - no type placeholders (``<bool>``, ``<int>``, ``<path>``): a flag shows none, an
      option its metavar (``--timeout SECONDS``), or else its long name in capitals
      (``--eval EVAL``), an argument its name in capitals.

    typer builds the click command tree (its own vendored click) afresh for each run,
    so this runs on each tree: see :func:`hybridnb.cli.main`.
    """
    for param in command.params:
        if param.param_type_name == "argument":
            param.metavar = param.metavar or param.name.upper()
            # typer prints the type beside an argument's name; the name says enough.
            param.display_type_rich = _no_type
        elif param.is_flag or param.count:
            param.metavar = ""
        elif param.metavar is None:
            longest = max(param.opts, key=len).lstrip("-")
            param.metavar = longest.upper().replace("-", "_")
    make_help = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make_help(ctx)
        if option is not None:
            option.metavar = ""  # a flag: no <bool>
        return option

    command.get_help_option = get_help_option
    if hasattr(command, "commands"):
        command.commands = dict(sorted(command.commands.items()))
        for sub in command.commands.values():
            tidy(sub)
    return command


def _no_type(ctx: Any) -> None:
    return None


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


def elapsed(seconds: float) -> str:
    """``M:SS`` for progress lines.

    >>> elapsed(75.4)
    '1:15'
    """
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a table of plain values."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console().print(t)
