"""``hybridnb config show``: the merged configuration and where each value came from."""

from __future__ import annotations

from typing import Any

import typer
import yaml

from .common import options, print_json

app = typer.Typer(help="Show the merged configuration.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context,
         as_json: bool = typer.Option(False, "--json", help="Print JSON with sources.")) -> None:
    """Print the merged configuration; each value is annotated with the file it came from."""
    config = options(ctx).config()
    data = config.model_dump(mode="json", exclude={"sites": {"__all__": {"name"}},
                                                   "datasets": {"__all__": {"name"}}})
    if as_json:
        print_json({"layers": config.layers, "config": data, "sources": config.sources})
        return
    typer.echo("# layers, lowest first: " + " → ".join(config.layers))
    for line in render(data, config.sources):
        typer.echo(line)


def render(data: dict[str, Any], sources: dict[str, str], path: tuple[str, ...] = (),
           indent: int = 0) -> list[str]:
    """YAML lines of ``data``, each leaf followed by ``# source``.

    A value nobody set says ``# default`` (the model's default); unset empty values
    (``null``, ``{}``) are left out as noise.
    """
    pad = "  " * indent
    lines: list[str] = []
    for key, value in data.items():
        sub = (*path, str(key))
        src = sources.get(".".join(sub), "default")
        if src == "default" and value in (None, {}, []):
            continue
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines += render(value, sources, sub, indent + 1)
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}  # {src}")
    return lines


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix(
        "\n...").removesuffix("...").strip()
