"""``hybridnb data prepare``: run a preprocessing pipeline defined in YAML."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import options

app = typer.Typer(help="Datasets and preprocessing pipelines.", no_args_is_help=True)


@app.command("prepare")
def prepare(ctx: typer.Context,
            pipeline: Path = typer.Argument(..., metavar="PIPELINE.yaml",
                                            help="Pipeline file: dataset, steps, out."),
            site: str | None = typer.Option(None, "--site",
                                            help="Run on this site's cluster; default: the "
                                                 "file's 'site', else in this process."),
            out: Path | None = typer.Option(None, "--out", metavar="DIR", help="Output directory "
                                                                "(overrides the file's)."),
            workers: int | None = typer.Option(None, "--workers", metavar="N",
                                                help="Workers to start."),
            force: bool = typer.Option(False, "--force", help="Recompute even if up to date."),
            as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
            ) -> None:
    """Run PIPELINE.yaml: steps in order, shards and a manifest written atomically."""
    from ..data import load_pipeline
    from ..sites import cluster
    from .common import print_json, table

    spec = load_pipeline(pipeline)
    config = options(ctx).config()
    dataset = spec.load_dataset(config)
    target = out or spec.out
    where = site or spec.site
    if where is None:
        result = spec.pipeline.run(dataset, out=target, config=config, force=force)
    else:
        kwargs = dict(spec.cluster)
        if workers is not None:
            kwargs["n_workers"] = workers
        with cluster(where, config=config, **kwargs) as handle:
            result = spec.pipeline.run(dataset, out=target, cluster=handle, force=force)
    summary = result.summary
    if as_json:
        print_json(summary.to_dict())
        return
    from ..data.summary import COLUMNS

    table(f"pipeline {summary.pipeline}: {summary.status}", list(COLUMNS), summary.rows())
    counts = ", ".join(f"{k}={v}" for k, v in summary.counts.items())
    typer.echo(f"{result.path}: {counts} ({result.manifest['classification']})")
    typer.echo(f"train on it: hybridnb train SPEC.yaml --data {_shown(Path(result.path))}")


def _shown(path: Path) -> str:
    """``path`` as the user would type it here: relative when under the working directory."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
