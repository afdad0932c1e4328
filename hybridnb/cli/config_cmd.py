"""``hybridnb config show``: the merged configuration and where each value came from."""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel

from ..config.units import format_bytes, parse_bytes
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
    for line in render(data, config.sources, sizes=size_paths(config)):
        typer.echo(line)


def render(data: dict[str, Any], sources: dict[str, str], path: tuple[str, ...] = (),
           indent: int = 0, *, sizes: set[tuple[str, ...]] | None = None) -> list[str]:
    """YAML lines of ``data``, each leaf followed by ``# source``.

    A value nobody set says ``# default`` (the model's default); unset empty values
    (``null``, ``{}``) are left out as noise, and so is a mapping left empty by that.
    Values at ``sizes`` (paths of byte counts) read as ``23.5 GiB``, which the
    configuration accepts back.

    >>> render({"capacity": {"memory": 25276071936, "gpu": None}, "budget": {"per_job": None}},
    ...        {"capacity.memory": "built-in default"}, sizes={("capacity", "memory")})
    ['capacity:', '  memory: 23.5 GiB  # built-in default']
    """
    pad = "  " * indent
    lines: list[str] = []
    for key, value in data.items():
        sub = (*path, str(key))
        src = sources.get(".".join(sub), "default")
        if src == "default" and value in (None, {}, []):
            continue
        if isinstance(value, dict) and value:
            below = render(value, sources, sub, indent + 1, sizes=sizes)
            if below:
                lines += [f"{pad}{key}:", *below]
        elif sizes and sub in sizes and isinstance(value, int):
            lines.append(f"{pad}{key}: {format_bytes(value)}  # {src}")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}  # {src}")
    return lines


def size_paths(model: BaseModel, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Paths (as in ``model_dump``) of the fields that hold byte counts (``ByteSize``).

    >>> from hybridnb.config import load_config
    >>> ("sites", "local", "capacity", "memory") in size_paths(load_config())
    True
    """
    out: set[tuple[str, ...]] = set()
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if _is_size(field.annotation, field.metadata):
            out.add((*path, name))
        elif isinstance(value, BaseModel):
            out |= size_paths(value, (*path, name))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    out |= size_paths(item, (*path, name, str(key)))
    return out


def _is_size(annotation: Any, metadata: list[Any]) -> bool:
    """Whether a field's validators include :func:`parse_bytes` (maybe inside Optional)."""
    if any(getattr(m, "func", None) is parse_bytes for m in metadata):
        return True
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _is_size(inner, extra)
    return any(_is_size(arg, []) for arg in get_args(annotation))


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix(
        "\n...").removesuffix("...").strip()
