"""``hybridnb cluster up|down|list``: clusters that outlive the command."""

from __future__ import annotations

import json
import sys
import uuid

import typer

from ..errors import UsageError
from .common import options, print_json, table

app = typer.Typer(help="Start, stop and list Dask clusters on sites.", no_args_is_help=True)


@app.command("up")
def up(ctx: typer.Context, site: str = typer.Argument("local", help="A configured site."),
       workers: int | None = typer.Option(None, "--workers", "-n", metavar="N",
                                          help="Number of workers."),
       threads: int | None = typer.Option(None, "--threads", metavar="N",
                                          help="Threads per worker."),
       memory: str | None = typer.Option(None, "--memory", metavar="SIZE",
                                         help="Memory per worker, e.g. 4GiB."),
       name: str | None = typer.Option(None, "--name", help="Name shown by 'cluster list'."),
       timeout: float = typer.Option(120.0, "--timeout", metavar="SECONDS",
                                      help="Seconds to wait for it to start.")) -> None:
    """Start a cluster on SITE in the background and print its address."""
    from ..sites.keeper import launch_keeper
    from ..state import StateStore, state_home

    config = options(ctx).config()
    config.site(site)  # unknown site: exit 2 before anything starts
    if workers is not None and workers < 0:
        raise UsageError(f"--workers {workers}: use 0 or more")
    name = name or f"{site}-{uuid.uuid4().hex[:6]}"
    store = StateStore()
    if any(r.name == name for r in store.list("cluster", active=True)):
        raise UsageError(f"a running cluster is already called {name!r}; pick another --name")
    logs = state_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    cmd = [sys.executable, "-m", "hybridnb.sites.keeper", "--site", site, "--name", name]
    for flag, value in (("--workers", workers), ("--threads", threads), ("--memory", memory)):
        if value is not None:
            cmd += [flag, str(value)]
    # The keeper must see the same configuration as this command.
    for path in options(ctx).files:
        cmd += ["--config", str(path)]
    if options(ctx).overrides:
        cmd += ["--overrides", json.dumps(options(ctx).overrides)]
    rec = launch_keeper(cmd, name=name, log_path=log_path, timeout=timeout, store=store)
    typer.echo(f"cluster {name} ({rec.id}) on {site}: {rec.address}")
    typer.echo(f"dashboard: {rec.spec.get('dashboard') or 'none (no dashboard)'}")
    typer.echo(f"connect: hybridnb.connect({name!r})   stop: hybridnb cluster down {name}")


@app.command("down")
def down(name: str = typer.Argument(..., help="Cluster name or id (see 'cluster list').")
         ) -> None:
    """Stop a cluster started with 'cluster up'."""
    from ..cleanup import terminate
    from ..state import StateStore, Status

    store = StateStore()
    matches = [r for r in store.list("cluster", active=True) if name in (r.name, r.id)]
    if not matches:
        known = ", ".join(r.name for r in store.list("cluster", active=True)) or "none"
        raise UsageError(f"no running cluster called {name!r}; running: {known}")
    for rec in matches:
        terminate(rec, grace=20.0)
        if store.get(rec.id).status.active:
            store.update(rec.id, status=Status.stopped, message="stopped by cluster down")
        typer.echo(f"stopped {rec.name} ({rec.id})")


@app.command("list")
def list_(all_: bool = typer.Option(False, "--all", "-a", help="Include stopped ones."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List clusters you started."""
    from ..state import StateStore

    store = StateStore()
    store.refresh()
    records = store.list("cluster", active=None if all_ else True)
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        typer.echo("no clusters running")
        return
    table(None, ["name", "id", "site", "backend", "status", "address", "dashboard"],
          [[r.name, r.id, r.site, r.backend, r.status.value, r.address,
            r.spec.get("dashboard")] for r in records])
