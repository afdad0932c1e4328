"""``hybridnb edge init|agent|push|status``: edge sites with thin, intermittent links."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from .common import options, print_json, table

app = typer.Typer(help="Edge sites: their agent, rollouts over thin links, and status.",
                  no_args_is_help=True)


@app.command("init")
def init(state_dir: Path = typer.Option(..., "--state-dir", help="The agent's directory."),
         host: list[str] = typer.Option([], "--host", help="Address the centre reaches "
                                        "the agent at (repeatable; written in the "
                                        "certificate).")) -> None:
    """Make the agent's key, self-signed certificate and token (once; kept after that)."""
    from ..serve.edge.tls import init_agent_dir

    ident = init_agent_dir(state_dir, hosts=host)
    typer.echo(f"certificate: {ident.cert}\nfingerprint: {ident.fingerprint}\n"
               f"token file:  {ident.token_file} (mode 600)")
    typer.echo("copy the certificate and the token file to the centre (a trusted channel), "
               "then in hybridnb.yaml:\n  edge: {agent: {address: "
               f"{host[0] if host else 'HOST'}, cert: PATH/agent.pem, fingerprint: "
               f"'{ident.fingerprint}', token_file: PATH/token}}}}")


@app.command("agent")
def agent(ctx: typer.Context,
          state_dir: Path = typer.Option(..., "--state-dir", help="The agent's directory."),
          site: str = typer.Option("edge", "--site", help="The edge site's name."),
          control: str = typer.Option("127.0.0.1:8443", "--control",
                                      help="HOST:PORT of the control port (TLS)."),
          front: str = typer.Option("127.0.0.1:8080", "--front",
                                    help="HOST:PORT local clients use."),
          bundle: Path | None = typer.Option(None, "--bundle",
                                             help="Roll this out when nothing is active."),
          options_file: Path | None = typer.Option(
              None, "--options-file", help="sites.NAME.edge as JSON (default: the site's "
                                           "configuration, if any, else the defaults)."),
          no_tls: bool = typer.Option(False, "--no-tls", help="Loopback control port only.")
          ) -> None:
    """Run the edge agent in the foreground (what the rendered systemd unit starts)."""
    from ..config.models import EdgeOptions
    from ..errors import UsageError
    from ..serve.edge.agent import AgentConfig, parse_address, run_agent

    if options_file is not None:
        try:
            edge = EdgeOptions.model_validate(json.loads(options_file.read_text()))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--options-file {options_file}: {exc}") from None
    else:
        configured = options(ctx).config().sites.get(site)
        edge = configured.edge if configured is not None and configured.edge else EdgeOptions()
    c, f = parse_address(control, "--control"), parse_address(front, "--front")
    # A daemon's log is its record: what it serves, each rollout and why it ended so.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    ours = logging.getLogger("hybridnb")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    run_agent(AgentConfig(state_dir=state_dir, site=site, control_host=c[0], control_port=c[1],
                          front_host=f[0], front_port=f[1], tls=not no_tls, options=edge,
                          bundle=bundle))


@app.command("push")
def push(ctx: typer.Context, bundle: Path = typer.Argument(..., help="The bundle directory."),
         site: str = typer.Option(..., "--site", help="The edge site."),
         deadline: float | None = typer.Option(
             None, "--deadline", help="Seconds to keep retrying through outages."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Send a bundle to an edge site (resumable, checksummed) and have it take over there.

    Exits 1 when the new version does not end up serving (the old one still does).
    """
    from ..serve.edge.client import RolloutError
    from ..serve.edge.client import push as push_bundle

    config = options(ctx).config()
    try:
        report = push_bundle(bundle, site, config=config, deadline_s=deadline)
    except RolloutError as exc:
        _show(exc.report, as_json)
        raise
    _show(report, as_json)


def _show(report: object, as_json: bool) -> None:
    from ..serve.edge.client import RolloutReport

    assert isinstance(report, RolloutReport)
    if as_json:
        print_json(report.to_dict())
        return
    typer.echo(repr(report))
    table("checks", ["check", "ok", "seconds", "detail"],
          [[c["name"], "yes" if c["ok"] else "NO", f"{c['seconds']:.2f}", c["detail"][:120]]
           for c in report.checks])


@app.command("status")
def status(ctx: typer.Context,
           site: list[str] = typer.Option([], "--site", help="Only these sites (repeatable)."),
           timeout: float = typer.Option(2.0, "--timeout", help="Seconds per agent."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """How each edge site looks from here: up, down or unreachable, and since when."""
    from ..monitor.edge import edge_status

    found = edge_status(options(ctx).config(), sites=site or None, timeout=timeout)
    if as_json:
        print_json([s.to_dict() for s in found])
        return
    if not found:
        typer.echo("no edge site has an agent configured (sites.NAME.edge.agent)")
        return
    table("edge sites", ["site", "state", "version", "buffered", "dropped", "last contact"],
          [[s.site, s.state.value, s.version, s.backlog, s.dropped,
            "never" if s.since_contact_s is None else f"{s.since_contact_s:.0f} s ago"]
           for s in found])
