"""``hybridnb demo-hybrid``: the hybrid case study, end to end across three hosts.

Runs ``notebooks/06_hybrid_case_study.ipynb`` headless (papermill, as ``hybridnb run``)
into ``--out``: three network-namespace hosts (``onprem`` through sshd, ``cloud``,
``edge``) with rate-limited links, placement, residency-pinned preprocessing with a
burst to the cloud, DDP training on onprem, a rollout to the edge queried across its
link, monitoring with an alert, and the clean-up of every host. It prints one line per
stage, then what ran where (from the workers' own records), the bytes through each
host's link, and the wall time; the records go to ``OUT/records.json``. It needs root
(network namespaces) and Debian's ``openssh-server``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..config.units import format_bytes
from ..errors import UsageError

NOTEBOOK = "06_hybrid_case_study.ipynb"
HOSTS = ("onprem", "cloud", "edge")


def summary(records: dict[str, Any]) -> list[str]:
    """The summary lines of a case-study run's records.

    >>> lines = summary({"placement": {"prepare the scans (pii)": "onprem"},
    ...                  "pii_tasks": {"onprem": 292, "cloud": 0},
    ...                  "pii_bytes_in": {"onprem": 358637, "cloud": 0},
    ...                  "bytes_per_link": {"train": {"onprem": 1000, "cloud": 0, "edge": 10}},
    ...                  "left_running": {}, "netns_left": [], "wall_seconds": 51.0})
    >>> lines[0]
    'placement          prepare the scans (pii) → onprem'
    >>> lines[1]
    'pii                tasks onprem 292, cloud 0; bytes fetched onprem 350.2 KiB, cloud 0 B'
    >>> lines[-2:]
    ['clean-up           nothing left running on any host; every namespace removed', \
'wall time          51 s']
    """
    def per_site(key: str, fmt: Any = str) -> str:
        value = records.get(key) or {}
        return ", ".join(f"{site} {fmt(n)}" for site, n in value.items()) or "–"

    placement = records.get("placement") or {}
    lines = ["placement          " + (", ".join(f"{step} → {site}" for step, site
                                                in placement.items()) or "–"),
             f"pii                tasks {per_site('pii_tasks')}; bytes fetched "
             f"{per_site('pii_bytes_in', format_bytes)}"]
    if "other_tasks" in records:
        lines.append(f"other tasks        {per_site('other_tasks')} (the public data's, "
                     "and the training ranks')")
    if "test_accuracy" in records:
        ranks = ", ".join(records.get("rank_sites") or []) or "–"
        lines.append(f"training           test accuracy {100 * records['test_accuracy']:.2f} %,"
                     f" ranks on {ranks}")
    if "bundle_bytes" in records:
        agrees = "yes" if records.get("edge_agrees") else "NO"
        only = "only the bundle's files" if records.get("edge_holds_only_the_bundle") else \
            "files other than the bundle's"
        lines.append(f"edge               {format_bytes(records['bundle_bytes'])} pushed in "
                     f"{records.get('push_seconds', '–')} s (transfer "
                     f"{records.get('push_transfer_seconds', '–')} s); it holds {only}, "
                     f"and answers as the bundle does: {agrees}")
    if "alerts_firing" in records:
        fired = ", ".join(records["alerts_firing"]) or "no alert"
        lines.append(f"alert              {fired} fired while the edge's link was down "
                     f"(seen {records.get('edge_state_during_outage', '–')}); it served "
                     f"{records.get('served_locally_during_outage', '–')} local requests, "
                     f"{records.get('edge_requests_forwarded', '–')} forwarded since")
    phases = records.get("bytes_per_link") or {}
    totals = {h: sum(p.get(h, 0) for p in phases.values()) for h in HOSTS}
    lines.append("bytes per link     " + ", ".join(f"{h} {format_bytes(n)}"
                                                   for h, n in totals.items())
                 + " (in and out, whole run)")
    left = records.get("left_running") or {}
    gone = not records.get("netns_left")
    lines.append("clean-up           " + (
        "nothing left running on any host" if not left else
        "LEFT RUNNING: " + "; ".join(f"{h}: {len(p)} process(es)" for h, p in left.items()))
        + ("; every namespace removed" if gone else "; NAMESPACES LEFT"))
    wall = records.get("wall_seconds")
    lines.append(f"wall time          {wall:.0f} s" if isinstance(wall, (int, float))
                 else "wall time          –")
    return lines


def demo_hybrid(ctx: typer.Context,
                epochs: int | None = typer.Option(None, "--epochs", metavar="N",
                                                  help="Training epochs (default: the "
                                                       "notebook's)."),
                outage: float | None = typer.Option(None, "--outage", metavar="SECONDS",
                                                    help="How long the edge's link goes "
                                                         "down (default: the notebook's)."),
                out: Path = typer.Option(Path("build/demo-hybrid"), "--out", metavar="DIR",
                                         help="Directory for the notebook, report, plots "
                                              "and records."),
                timeout: float = typer.Option(600.0, "--timeout", metavar="SECONDS",
                                              help="Seconds any one cell may run."),
                ) -> None:
    """Run the hybrid case study across three network-namespace hosts (needs root).

    Prints each stage as it starts, then where each step ran, what the workers received
    per classification, the edge's rollout and answer, the alert, the bytes through each
    host's link, the clean-up and the wall time.
    """
    from ..testing.sshd import sshd_skip_reason
    from .demo import quickstart_notebook, run_in_stages

    reason = sshd_skip_reason()
    if reason is not None:
        raise UsageError(f"demo-hybrid builds three hosts from network namespaces with "
                         f"Debian's sshd in one, and cannot here: {reason}. Run it as root "
                         "on Linux with iproute2 and openssh-server")
    notebook = quickstart_notebook(NOTEBOOK, "demo-hybrid")
    out = out.expanduser().resolve()
    parameters: dict[str, Any] = {"out_dir": str(out)}
    if epochs is not None:
        parameters["epochs"] = epochs
    if outage is not None:
        parameters["outage_s"] = outage
    run = run_in_stages(ctx, notebook, out / NOTEBOOK, parameters, timeout=timeout,
                        what="demo-hybrid", records=out / "records.json")
    typer.echo(f"done in {run.seconds:.0f} s")
    for line in summary(run.records):
        typer.echo(f"  {line}")
    typer.echo(f"  notebook           {run.output}")
    if run.report:
        typer.echo(f"  report             {run.report}")
    typer.echo(f"  records            {out / 'records.json'}")
    for path in (out / "report.json", out / "links.png"):
        if path.exists():
            typer.echo(f"  {path.suffix[1:]:18} {path}")
