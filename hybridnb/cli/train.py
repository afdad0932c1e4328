"""``hybridnb train SPEC.yaml``: train a model from a spec file."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import options


def train(ctx: typer.Context,
          spec: Path = typer.Argument(..., metavar="SPEC.yaml", help="Training spec (YAML)."),
          site: str = typer.Option("local", "--site", help="Site to train on."),
          nprocs: int = typer.Option(2, "--nprocs", "-n", help="Number of ranks."),
          launcher: str = typer.Option("local", "--launcher",
                                       help="local, dask or kubernetes"),
          run_dir: Path | None = typer.Option(None, "--run-dir",
                                              help="Run directory (default: under state)."),
          resume: bool = typer.Option(False, "--resume",
                                      help="Continue from the run dir's latest checkpoint."),
          no_bundle: bool = typer.Option(False, "--no-bundle",
                                         help="Do not write a model bundle.")) -> None:
    """Train with torch.distributed (DDP or FSDP); print where the results are."""
    from ..train import fit

    result = fit(spec, site=site, nprocs=nprocs, launcher=launcher, run_dir=run_dir,
                 resume=resume, config=options(ctx).config(), bundle=not no_bundle)
    typer.echo(repr(result))
    if result.bundle is not None:
        typer.echo(f"bundle: {result.bundle}")
