"""``hybridnb monitor``: targets up or down and firing alerts; ``monitor export``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..notebooks.records import format_value
from .common import print_json, table

app = typer.Typer(help="Metrics of what you started: status, and exports for Prometheus.",
                  no_args_is_help=False, invoke_without_command=True)


@app.callback()
def show(ctx: typer.Context,
         rules: Path | None = typer.Option(None, "--rules", metavar="FILE",
                                           help="Alert rules YAML file (default: the "
                                                "rules hybridnb ships)."),
         timeout: float = typer.Option(1.0, "--timeout", metavar="SECONDS",
                                       help="Seconds per scrape."),
         gap: float = typer.Option(1.0, "--over", metavar="SECONDS",
                                   help="Seconds between the two scrapes that rates and "
                                        "p99 are measured over (0: one scrape, no rates)."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Scrape what is running twice; show each target's state, requests/s and p99, and
    the alerts that fire."""
    if ctx.invoked_subcommand is not None:
        return
    from ..errors import UsageError
    from ..monitor.alerts import load_rules
    from ..monitor.exports import status

    if gap < 0:
        raise UsageError(f"--over {gap:g}: give 0 or more seconds")
    result = status(rules=load_rules(rules) if rules else None, timeout=timeout, gap=gap)
    if as_json:
        print_json(result)
        return
    if not result["targets"]:
        typer.echo("targets: none (no running endpoints, clusters or training runs)")
    else:
        table("targets", ["job", "instance", "name", "state", "requests/s", "p99", "error"],
              [[t["job"], t["instance"], t["name"], "up" if t["up"] else "DOWN",
                _rate(t.get("requests_per_second")), _ms(t.get("p99_seconds")), t["error"]]
               for t in result["targets"]])
    if not result["firing"]:
        # ``for`` durations need history: a short look shows conditions without ``for``.
        typer.echo("alerts firing: none")
        return
    table("alerts firing", ["alert", "severity", "labels", "value"],
          [[a["alert"], a["severity"], ", ".join(f"{k}={v}" for k, v in a["labels"].items()),
            format_value(a["value"])] for a in result["firing"]])


def _rate(value: float | None) -> str:
    """``12.5`` requests/s; ``–`` for targets that are not endpoints."""
    return "–" if value is None else f"{value:.1f}"


def _ms(seconds: float | None) -> str:
    """``23.1 ms``; ``–`` without requests."""
    return "–" if seconds is None else f"{seconds * 1000:.1f} ms"


@app.command("export")
def export(out: Path = typer.Option(..., "--out", metavar="DIR", help="Directory to write into."),
           rules: Path | None = typer.Option(None, "--rules", metavar="FILE",
                                              help="Alert rules YAML file."),
           namespace: str = typer.Option("default", "--namespace",
                                         help="Kubernetes namespace of the objects.")) -> None:
    """Write prometheus.yml, targets.json (file_sd), rules.yml, a Grafana dashboard and
    Kubernetes ServiceMonitor/PrometheusRule objects."""
    from ..monitor.alerts import load_rules
    from ..monitor.exports import write_exports

    for path in write_exports(out, rules=load_rules(rules) if rules else None,
                              namespace=namespace):
        typer.echo(str(path))
