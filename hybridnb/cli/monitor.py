"""``hybridnb monitor``: targets up or down and firing alerts; ``monitor export``."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import print_json, table

app = typer.Typer(help="Metrics of what you started: status, and exports for Prometheus.",
                  no_args_is_help=False, invoke_without_command=True)


@app.callback()
def show(ctx: typer.Context,
         rules: Path | None = typer.Option(None, "--rules", help="Alert rules YAML file."),
         timeout: float = typer.Option(1.0, "--timeout", help="Seconds per scrape."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Scrape every running target once; show which are up and which alerts fire."""
    if ctx.invoked_subcommand is not None:
        return
    from ..monitor.alerts import load_rules
    from ..monitor.exports import status

    result = status(rules=load_rules(rules) if rules else None, timeout=timeout)
    if as_json:
        print_json(result)
        return
    table("targets", ["job", "instance", "name", "state", "error"],
          [[t["job"], t["instance"], t["name"], "up" if t["up"] else "DOWN", t["error"]]
           for t in result["targets"]])
    if not result["targets"]:
        typer.echo("no running endpoints, clusters or training runs")
    # ``for`` durations need history: one round shows conditions with no ``for`` only.
    table("firing alerts", ["alert", "severity", "labels", "value"],
          [[a["alert"], a["severity"], ", ".join(f"{k}={v}" for k, v in a["labels"].items()),
            a["value"]] for a in result["firing"]])


@app.command("export")
def export(out: Path = typer.Option(..., "--out", help="Directory to write into."),
           rules: Path | None = typer.Option(None, "--rules", help="Alert rules YAML file."),
           namespace: str = typer.Option("default", "--namespace",
                                         help="Kubernetes namespace of the objects.")) -> None:
    """Write prometheus.yml, targets.json (file_sd), rules.yml, a Grafana dashboard and
    Kubernetes ServiceMonitor/PrometheusRule objects."""
    from ..monitor.alerts import load_rules
    from ..monitor.exports import write_exports

    for path in write_exports(out, rules=load_rules(rules) if rules else None,
                              namespace=namespace):
        typer.echo(str(path))
