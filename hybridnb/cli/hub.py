"""``hybridnb hub render`` and ``hybridnb hub-service``: hybridnb on a team's JupyterHub."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import UsageError
from .common import options

app = typer.Typer(help="Configure a team's JupyterHub for hybridnb.", no_args_is_help=True)


@app.command("render")
def render(
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write into."),
    team: Path | None = typer.Option(
        None, "--team", help="The team's hybridnb.yaml (with 'teams:'); default the system "
        "layer ($HYBRIDNB_SYSTEM_CONFIG or /etc/hybridnb/hybridnb.yaml)."),
    team_path: str = typer.Option(
        "/etc/hybridnb/hybridnb.yaml", "--team-path",
        help="Where a hub configured in Python finds the team file (zero-to-jupyterhub "
        "always mounts it at /etc/hybridnb/hybridnb.yaml)."),
) -> None:
    """Write jupyterhub_config.d/hybridnb.py, z2jh-values.yaml and the service's manifests,
    each checked (the chart's values schema, the Kubernetes schemas) before writing."""
    from ..config.layers import SYSTEM_PATH
    from ..hub.render import render as do_render

    source = team or Path(os.environ.get("HYBRIDNB_SYSTEM_CONFIG") or SYSTEM_PATH)
    if not source.is_file():
        raise UsageError(f"no team file at {source}: pass --team FILE (a hybridnb.yaml with "
                         "a 'teams:' section)")
    for path in do_render(source, out, team_path=team_path):
        typer.echo(f"wrote {path}")


def hub_service(
    ctx: typer.Context,
    listen: str | None = typer.Option(None, "--listen", help="host:port; default "
                                      "teams.service.listen."),
    database: str | None = typer.Option(
        None, "--database", help="SQLAlchemy URL of the ledger; default teams.service."
        "database, else SQLite in $HYBRIDNB_HOME/hub/ledger.db."),
    hub_api_url: str | None = typer.Option(
        None, "--hub-api-url", help="The hub's API; default $JUPYTERHUB_API_URL, else "
        "http://127.0.0.1:8081/hub/api."),
) -> None:
    """Run the team's hub service (a JupyterHub service: ledger, quotas, admin page)."""
    from ..hub.service import serve
    from ..state import state_home

    config = options(ctx).config()
    teams = config.teams
    if teams is None:
        raise UsageError("the configuration has no 'teams:' section; the hub service needs "
                         "the team's groups and quotas (see hybridnb.config.teams)")
    token = os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get(teams.service.api_token_env)
    if not token:
        raise UsageError(f"no API token for the service: the hub sets $JUPYTERHUB_API_TOKEN "
                         f"for a managed service; else set ${teams.service.api_token_env}")
    if database is None and teams.service.database is None:
        home = state_home() / "hub"
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        database = f"sqlite:///{home / 'ledger.db'}"
    serve(teams, database=database or str(teams.service.database),
          listen=listen or teams.service.listen,
          api_url=hub_api_url or os.environ.get("JUPYTERHUB_API_URL")
          or "http://127.0.0.1:8081/hub/api", api_token=token,
          on_listen=lambda url: typer.echo(f"hybridnb hub service at {url}"))
