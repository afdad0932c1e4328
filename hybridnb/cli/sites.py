"""``hybridnb sites list|show|validate``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config.units import format_bytes
from .common import options, print_json, table

app = typer.Typer(help="List, show and validate sites.", no_args_is_help=True)


@app.command("list")
def list_sites(ctx: typer.Context,
               as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the configured sites with tier, backend, capacity and cost."""
    config = options(ctx).config()
    if as_json:
        print_json([s.model_dump(mode="json") for s in config.sites.values()])
        return
    rows = [[s.name, s.tier, s.backend, f"{s.capacity.cpu:g}", format_bytes(s.capacity.memory),
             f"{s.capacity.gpu}" + (f" × {s.capacity.gpu_type}" if s.capacity.gpu_type else ""),
             f"${s.cost.cpu_hour:g}/${s.cost.gpu_hour:g}", ", ".join(s.classifications),
             "yes" if s.tls else "no"]
            for s in config.sites.values()]
    table("sites", ["site", "tier", "backend", "cpu", "memory", "gpu", "$/cpu-h / $/gpu-h",
                    "data allowed", "tls"], rows)


@app.command("show")
def show(ctx: typer.Context, name: str = typer.Argument(..., help="Site name."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one site in full, with where each value came from."""
    from .config_cmd import render, size_paths

    config = options(ctx).config()
    site = config.site(name)
    data = site.model_dump(mode="json", exclude={"name"})
    if as_json:
        print_json(data)
        return
    typer.echo(f"{name}:")
    for line in render(data, config.sources, ("sites", name), indent=1,
                       sizes=size_paths(site, ("sites", name))):
        typer.echo(line)


@app.command("validate")
def validate(ctx: typer.Context, file: Path | None = typer.Argument(
        None, help="A file to check alone; default: every configuration layer.")) -> None:
    """Check configuration; exit 2 with one message per problem."""
    from ..config import check_file

    config = check_file(file) if file is not None else options(ctx).config()
    where = str(file) if file is not None else " → ".join(config.layers)
    typer.echo(f"ok: {len(config.sites)} site(s), {len(config.datasets)} dataset(s) in {where}")
