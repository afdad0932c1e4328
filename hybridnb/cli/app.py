"""The ``hybridnb`` command: global options and the command groups.

Commands are thin (STYLE.md habit 7): parse, call one library function, print. Errors
become exit codes in :func:`hybridnb.cli.main`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .. import __version__
from . import (
    cluster,
    compress,
    config_cmd,
    data,
    demo,
    demo_hybrid,
    doctor,
    edge,
    hub,
    images,
    jobs,
    monitor,
    notebooks,
    plan,
    ps,
    serve,
    sites,
    train,
    worker,
)
from .common import Options, parse_sets

app = typer.Typer(
    name="hybridnb",
    help="Notebook-first platform for AI on hybrid clouds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hybridnb {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: list[Path] = typer.Option(
        [], "--config", "-c", metavar="FILE",
        help="Extra config file, above every other layer (repeatable)."),
    set_: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE",
        help="Override a value: --set sites.local.capacity.cpu=4 (repeatable)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """hybridnb: sites, Dask clusters, distributed training, endpoints, monitoring."""
    ctx.obj = Options(files=list(config), overrides=parse_sets(set_), debug=debug)


app.add_typer(config_cmd.app, name="config")
app.add_typer(sites.app, name="sites")
app.add_typer(cluster.app, name="cluster")
app.add_typer(jobs.app, name="jobs")
app.add_typer(data.app, name="data")
app.add_typer(hub.app, name="hub")
app.command("hub-service")(hub.hub_service)
app.command("train")(train.train)
app.command("worker")(worker.worker)
app.command("doctor")(doctor.doctor)
app.command("plan")(plan.plan)
app.command("demo")(demo.demo)
app.command("demo-hybrid")(demo_hybrid.demo_hybrid)
app.command("run", context_settings=notebooks.PASS_THROUGH)(notebooks.run)
app.command("sweep", context_settings=notebooks.PASS_THROUGH)(notebooks.sweep)
app.command("serve")(serve.serve)
app.command("deploy")(serve.deploy)
app.command("compress")(compress.compress)
app.add_typer(monitor.app, name="monitor")
app.add_typer(edge.app, name="edge")
app.add_typer(images.app, name="images")
app.add_typer(serve.endpoints_app, name="endpoints")
app.command("ps")(ps.ps)
app.command("gc")(ps.gc)
