"""``hybridnb run`` and ``hybridnb sweep``: notebooks headless with papermill."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from ..errors import UsageError
from ..notebooks.records import format_value
from .common import elapsed, options


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


# `-p NAME VALUE` takes two values and repeats, which typer's options cannot declare: the
# commands that accept it collect everything after NOTEBOOK in one documented argument
# (click forwards unknown options into it) and split it with :func:`pairs`.
PASS_THROUGH = {"ignore_unknown_options": True}

REST_METAVAR = "OUTPUT | -p NAME VALUE"
PARAMETER_HELP = ("-p NAME VALUE (or --parameter) sets a parameter that the notebook's "
                  "'parameters' cell declares, VALUE read as YAML (5, 0.1, true, [1, 2]); "
                  "repeatable.")
ALLOW_UNKNOWN_HELP = ("Inject parameters the notebook does not declare (a warning each) "
                      "instead of refusing them with exit 2.")


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
        notebook: Path = typer.Argument(..., metavar="NOTEBOOK",
                                        help="The notebook to run (.ipynb)."),
        args: list[str] | None = typer.Argument(
            None, metavar=REST_METAVAR,
            help="OUTPUT: where the executed notebook goes (default: a new file under "
                 "$HYBRIDNB_HOME/notebooks/, never next to NOTEBOOK). " + PARAMETER_HELP),
        param_file: list[Path] = typer.Option([], "-f", "--parameters-file", metavar="FILE",
                                              help="YAML file of parameters (repeatable)."),
        allow_unknown: bool = typer.Option(False, "--allow-unknown-parameters",
                                           help=ALLOW_UNKNOWN_HELP),
        site: str = typer.Option("local", "--site", help="Where to run it: 'local', or a "
                                                         "site with backend kubernetes."),
        timeout: float | None = typer.Option(None, "--timeout", metavar="SECONDS",
                                             help="Seconds any one cell may run."),
        report: bool = typer.Option(False, "--report",
                                    help="Also write an HTML report next to OUTPUT."),
        render: Path | None = typer.Option(None, "--render", metavar="DIR",
                                           help="Kubernetes sites: write the Job YAML here "
                                                "instead of submitting it."),
        ) -> None:
    """Run NOTEBOOK headless with papermill: hybridnb run NB.ipynb -p epochs 5.

    Prints each '##' section as the run reaches it, then the outcome and what the
    notebook recorded. Exit codes: 0 ok, 2 bad input (an undeclared or mistyped
    parameter among them), 3 a cell raised, 4 timeout, 5 the kernel died.
    """
    from ..notebooks.runner import run_notebook

    flat, rest = pairs(list(args or []))
    if len(rest) > 1 or any(r.startswith("-") for r in rest):
        raise UsageError(f"unexpected arguments: {' '.join(rest)} (usage: hybridnb run "
                         f"NOTEBOOK {REST_METAVAR})")
    output = Path(rest[0]) if rest else None
    parameters = _parameters(flat, param_file)
    if site != "local":
        _run_on_kubernetes(ctx, notebook, parameters, site, timeout, render, allow_unknown)
        return
    if render is not None:
        raise UsageError("--render writes a Kubernetes Job: give --site with a kubernetes site")
    start = time.monotonic()

    def section(title: str) -> None:
        typer.echo(f"[{elapsed(time.monotonic() - start)}] {title}", err=True)

    with options(ctx).for_children():  # the kernel resolves the same configuration
        result = run_notebook(notebook, output, parameters, timeout=timeout, report=report,
                              site=site, allow_unknown=allow_unknown, on_section=section)
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{result.outcome.value} in {result.seconds:.1f} s: {result.output}")
    for k, v in result.records.items():
        typer.echo(f"  {k} = {format_value(v)}")
    if result.report:
        typer.echo(f"report: {result.report}")
    if not result.ok:
        where = f" at cell [{result.failed_cell}]" if result.failed_cell is not None else ""
        typer.echo(f"error{where}: {result.error}\n(the partial output is kept in "
                   f"{result.output})", err=True)
        raise typer.Exit(result.exit_code)


def _run_on_kubernetes(ctx: typer.Context, notebook: Path, parameters: dict[str, Any],
                       site: str, timeout: float | None, render: Path | None,
                       allow_unknown: bool) -> None:
    """Render the notebook's Job (``--render DIR``), or submit it to the site's cluster."""
    from ..notebooks.k8s import notebook_job, submit_notebook, write_notebook_job
    from ..notebooks.runner import check_parameters

    if allow_unknown:  # the Job's own `hybridnb run` would refuse them in the pod
        raise UsageError("--allow-unknown-parameters applies to local runs only; a "
                         "Kubernetes Job takes the parameters its notebook declares")
    if not Path(notebook).is_file():
        raise UsageError(f"notebook not found: {notebook}")
    check_parameters(Path(notebook), parameters)  # a typo fails here, not in the pod

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
          notebook: Path = typer.Argument(..., metavar="NOTEBOOK",
                                          help="The notebook to run (.ipynb)."),
          args: list[str] | None = typer.Argument(
              None, metavar="-p NAME VALUE",
              help=PARAMETER_HELP + " Fixed for every run; --grid varies."),
          grid: list[str] = typer.Option(..., "--grid", metavar="NAME=V1,V2",
                                         help="Values of one parameter, comma-separated "
                                              "(repeatable): every combination is a run."),
          out: Path = typer.Option(..., "--out", metavar="DIR",
                                   help="Directory for the runs and results.csv/.parquet."),
          parallel: int = typer.Option(2, "--parallel", metavar="N", help="Runs at once."),
          timeout: float | None = typer.Option(None, "--timeout", metavar="SECONDS",
                                               help="Seconds any one cell may run."),
          retries: int = typer.Option(0, "--retries", metavar="N",
                                      help="Retries of a failed or timed-out run."),
          allow_unknown: bool = typer.Option(False, "--allow-unknown-parameters",
                                             help=ALLOW_UNKNOWN_HELP),
          ) -> None:
    """Run NOTEBOOK for every combination of --grid values, in parallel on Dask.

    Exit codes: 0 every run succeeded, 1 a run failed or timed out, 2 bad input.
    """
    from ..notebooks.sweeps import parse_grid
    from ..notebooks.sweeps import sweep as run_sweep

    flat, rest = pairs(list(args or []))
    if rest:
        raise UsageError(f"unexpected arguments: {' '.join(rest)}")
    with options(ctx).for_children():  # every run's kernel resolves the same configuration
        result = run_sweep(notebook, parse_grid(grid), out=out, parallel=parallel,
                           timeout=timeout, retries=retries,
                           parameters=_parameters(flat, []), allow_unknown=allow_unknown)
    typer.echo(result.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    n, bad = len(result.table), len(result.failed)
    typer.echo(f"{n} runs in {result.seconds:.1f} s: {n - bad} succeeded, {bad} failed or "
               f"timed out\nresults: {result.csv}, {result.parquet}")
    if bad:
        raise typer.Exit(1)
