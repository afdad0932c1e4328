"""``hybridnb jobs list|submit|show|cancel``: notebooks queued on a site the planner chose."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import UsageError
from .common import options, print_json, table

app = typer.Typer(help="Notebook jobs: queued, run where the planner says, outliving you.",
                  no_args_is_help=True)


@app.command("submit", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def submit(ctx: typer.Context,
           notebook: Path = typer.Argument(..., help="The notebook to run."),
           site: str | None = typer.Option(None, "--site", help="Where (default: the planner's "
                                                                "choice)."),
           cluster: str | None = typer.Option(None, "--cluster",
                                              help="Run as a task on this running cluster."),
           timeout: float | None = typer.Option(None, "--timeout", help="Seconds per cell."),
           param_file: list[Path] = typer.Option([], "-f", "--parameters-file",
                                                 help="YAML file of parameters."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Queue NOTEBOOK as a job; -p NAME VALUE sets a parameter."""
    from ..notebooks.jobs import submit as submit_job
    from .notebooks import _parameters, pairs

    flat, rest = pairs(list(ctx.args))
    if rest:
        raise UsageError(f"unexpected arguments: {' '.join(rest)}")
    # --config/--set shape the plan; the job process, which outlives this command, reads
    # the configuration files as they are on disk when it starts.
    job = submit_job(notebook, _parameters(flat, param_file), site=site, cluster=cluster,
                     timeout=timeout, started_from="cli", config=options(ctx).config())
    if as_json:
        print_json(job.model_dump(mode="json"))
        return
    typer.echo(f"{job.id}: {job.status.value} on {job.site} ({job.mode})")
    typer.echo(f"why: {job.plan}")
    typer.echo(f"follow: hybridnb jobs show {job.id} --follow")


@app.command("list")
def list_(all_: bool = typer.Option(False, "--all", "-a", help="Include ended ones."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List your jobs (queued and running; --all for every one)."""
    from ..notebooks.jobs import advance, list_jobs

    advance()
    jobs = list_jobs(active=None if all_ else True)
    if as_json:
        print_json([j.model_dump(mode="json") for j in jobs])
        return
    if not jobs:
        typer.echo("no jobs" if all_ else "no jobs queued or running (--all shows ended ones)")
        return
    table(None, ["id", "notebook", "site", "mode", "status", "error"],
          [[j.id, j.name, j.site, j.mode, j.status.value, j.error] for j in jobs])


@app.command("show")
def show(job_id: str = typer.Argument(..., help="A job id."),
         lines: int = typer.Option(20, "--lines", "-n", help="Log lines to show."),
         follow: bool = typer.Option(False, "--follow", help="Wait until it ends."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show a job: status, where its files are, the tail of its log."""
    from ..notebooks.jobs import JobStatus, get, log_tail

    job = get(job_id)
    while follow and job.status in (JobStatus.queued, JobStatus.running):
        time.sleep(1.0)
        job = get(job_id)
    if as_json:
        print_json({**job.model_dump(mode="json"), "log_tail": log_tail(job_id, lines)})
        return
    typer.echo(f"{job.id}: {job.status.value} on {job.site} ({job.mode}), {job.notebook}")
    for key in ("error", "output", "report", "manifest", "log"):
        if getattr(job, key):
            typer.echo(f"  {key}: {getattr(job, key)}")
    tail = log_tail(job_id, lines)
    if tail:
        typer.echo(tail)
    if follow and job.status is not JobStatus.succeeded:
        raise typer.Exit(1)


@app.command("cancel")
def cancel(job_id: str = typer.Argument(..., help="A job id.")) -> None:
    """Cancel a queued or running job (its processes are stopped)."""
    from ..notebooks.jobs import cancel as cancel_job

    job = cancel_job(job_id)
    typer.echo(f"{job.id}: {job.status.value}")
