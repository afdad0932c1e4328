"""``hybridnb run`` and ``hybridnb sweep``: notebooks headless with papermill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import UsageError
from .common import options

EXIT_HELP = "Exit codes: 0 ok, 2 bad input, 3 a cell raised, 4 timeout, 5 the kernel died."


def _parameters(pairs: list[str], files: list[Path]) -> dict[str, Any]:
    import yaml

    params: dict[str, Any] = {}
    for f in files:
        try:
            data = yaml.safe_load(Path(f).read_text()) or {}
        except FileNotFoundError:
            raise UsageError(f"parameters file not found: {f}") from None
        except yaml.YAMLError as exc:
            raise UsageError(f"{f}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{f}: expected 'name: value' lines")
        params.update(data)
    if len(pairs) % 2:
        raise UsageError("-p takes a NAME and a VALUE: -p lr 0.01")
    for name, value in zip(pairs[::2], pairs[1::2], strict=True):
        params[name] = yaml.safe_load(value)  # numbers, booleans and lists typed as in YAML
    return params


# `-p NAME VALUE` takes two values, which typer's options cannot: commands that accept
# it collect their unknown arguments and pass them through here.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def pairs(args: list[str]) -> tuple[list[str], list[str]]:
    """Split ``-p NAME VALUE`` pairs out of ``args``: ``(flat pairs, the rest)``.

    >>> pairs(["-p", "lr", "0.1", "out.ipynb", "--parameter", "n", "2"])
    (['lr', '0.1', 'n', '2'], ['out.ipynb'])
    """
    flat, rest, i = [], [], 0
    while i < len(args):
        if args[i] in ("-p", "--parameter"):
            if i + 2 >= len(args):
                raise UsageError("-p takes a NAME and a VALUE: -p lr 0.01")
            flat += args[i + 1:i + 3]
            i += 3
        else:
            rest.append(args[i])
            i += 1
    return flat, rest


def run(ctx: typer.Context,
        notebook: Path = typer.Argument(..., help="The notebook to run."),
        param_file: list[Path] = typer.Option([], "-f", "--parameters-file",
                                              help="YAML file of parameters."),
        site: str = typer.Option("local", "--site", help="Where to run it."),
        timeout: float | None = typer.Option(None, "--timeout", help="Seconds per cell."),
        report: bool = typer.Option(False, "--report", help="Also write an HTML report."),
        render: Path | None = typer.Option(None, "--render",
                                           help="Kubernetes sites: write the Job YAML here "
                                                "instead of submitting it."),
        ) -> None:
    """Run NOTEBOOK [OUTPUT] headless with papermill; -p NAME VALUE sets a parameter.
    Exit codes: 0 ok, 2 bad input, 3 a cell raised, 4 timeout, 5 the kernel died."""
    from ..notebooks.runner import run_notebook

    flat, rest = pairs(list(ctx.args))
    if len(rest) > 1 or any(r.startswith("-") for r in rest):
        raise UsageError(f"unexpected arguments: {' '.join(rest)}")
    output = Path(rest[0]) if rest else None
    if site != "local":
        _run_on_kubernetes(ctx, notebook, _parameters(flat, param_file), site, timeout, render)
        return
    if render is not None:
        raise UsageError("--render writes a Kubernetes Job: give --site with a kubernetes site")
    with options(ctx).for_children():  # the kernel resolves the same configuration
        result = run_notebook(notebook, output, _parameters(flat, param_file),
                              timeout=timeout, report=report, site=site)
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{result.outcome.value}: {result.output} ({result.seconds:.1f} s)")
    for k, v in result.records.items():
        typer.echo(f"  {k} = {v}")
    if result.report:
        typer.echo(f"report: {result.report}")
    if not result.ok:
        where = f" at cell [{result.failed_cell}]" if result.failed_cell is not None else ""
        typer.echo(f"error{where}: {result.error}\n(the partial output is kept in "
                   f"{result.output})", err=True)
        raise typer.Exit(result.exit_code)


def _run_on_kubernetes(ctx: typer.Context, notebook: Path, parameters: dict[str, Any],
                       site: str, timeout: float | None, render: Path | None) -> None:
    """Render the notebook's Job (``--render DIR``), or submit it to the site's cluster."""
    from ..notebooks.k8s import notebook_job, submit_notebook, write_notebook_job

    config = options(ctx).config()
    opts = config.site(site).kubernetes
    if opts is None:
        raise UsageError(f"--site {site}: notebooks run on 'local' or on a site with "
                         "'backend: kubernetes'")
    if render is not None:
        nb_job = notebook_job(notebook, parameters, image=opts.image,
                              namespace=opts.namespace, env=opts.env, timeout=timeout,
                              service_account=opts.service_account)
        path, secret_path = write_notebook_job(nb_job, render)
        if secret_path is not None:  # the path only: the values stay in the file
            typer.echo(f"rendered: {secret_path} (the Job's Secret: mode 600, git-ignored)")
            typer.echo(f"rendered: {path} (kubectl apply -f {secret_path} -f {path})")
        else:
            typer.echo(f"rendered: {path} (kubectl apply -f {path})")
        return
    job = submit_notebook(notebook, parameters, site=site, config=config, timeout=timeout)
    meta = job["metadata"]
    typer.echo(f"submitted: job/{meta['name']} in namespace {meta['namespace']} "
               f"(kubectl logs -f -n {meta['namespace']} job/{meta['name']})")


def sweep(ctx: typer.Context,
          notebook: Path = typer.Argument(..., help="The notebook to run."),
          grid: list[str] = typer.Option(..., "--grid", help="NAME=V1,V2 (repeatable)."),
          out: Path = typer.Option(..., "--out", help="Directory for runs and results."),
          parallel: int = typer.Option(2, "--parallel", help="Runs at once."),
          timeout: float | None = typer.Option(None, "--timeout", help="Seconds per cell."),
          retries: int = typer.Option(0, "--retries", help="Retries of a failed run."),
          ) -> None:
    """Run NOTEBOOK for every combination of --grid values, in parallel on Dask;
    -p NAME VALUE fixes a parameter for every run."""
    from ..notebooks.sweeps import parse_grid
    from ..notebooks.sweeps import sweep as run_sweep

    flat, rest = pairs(list(ctx.args))
    if rest:
        raise UsageError(f"unexpected arguments: {' '.join(rest)}")
    with options(ctx).for_children():  # every run's kernel resolves the same configuration
        result = run_sweep(notebook, parse_grid(grid), out=out, parallel=parallel,
                           timeout=timeout, retries=retries,
                           parameters=_parameters(flat, []))
    typer.echo(result.table.to_string(index=False))
    typer.echo(f"{result!r}\nresults: {result.csv}, {result.parquet}")
    if len(result.failed):
        raise typer.Exit(1)
