"""``hybridnb demo``: the main job, end to end on the embedded default.

Runs ``notebooks/00_quickstart.ipynb`` headless with papermill (the same runner as
``hybridnb run``) into ``--out``: the executed notebook, its HTML report, and the plots,
data, training run and metrics the notebook writes there. It prints one line per stage
as the run reaches it, then a summary: test accuracy, the endpoint's accuracy on the same
images, server-side p99 (the replicas' histogram, as on the dashboard) apart from
client-side p50/p99 (measured in the notebook's kernel), whether the latency alert fired
with its threshold and the value that tripped it, and where the files are.
A failing cell exits with the runner's code (3 a cell raised, 4 timeout, 5 the kernel
died) and names the cell.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from ..errors import UsageError
from .common import elapsed

QUICKSTART = "00_quickstart.ipynb"


def quickstart_notebook(name: str = QUICKSTART, command: str = "demo") -> Path:
    """A notebook of this checkout (``notebooks/`` beside the package): the quickstart's
    by default."""
    path = Path(__file__).resolve().parents[2] / "notebooks" / name
    if not path.is_file():
        raise UsageError(f"{path} not found: 'hybridnb {command}' runs the notebooks of a "
                         f"source checkout (git clone, then 'make {command}')")
    return path


def summary(records: dict[str, Any]) -> list[str]:
    """The summary lines of a demo run's records, each figure saying what it measures.

    >>> lines = summary({"test_accuracy": 0.98, "test_images": 180,
    ...                  "endpoint_accuracy": 0.98, "replicas_healthy": 2,
    ...                  "server_p99_ms": 24.0, "server_p99_one_client_ms": 7.8,
    ...                  "client_p50_ms": 33.8, "client_p99_ms": 57.6, "requests": 400,
    ...                  "concurrency": 8, "latency_alert_ms": 10.0,
    ...                  "alerts_fired": ["EndpointLatencyHigh"], "alert_value_ms": 24.0})
    >>> lines[0]
    'test accuracy      98.00 % (training, on the 180 test images)'
    >>> lines[2].split(" (")[0]
    'server-side p99    24.0 ms under the burst, 7.8 ms from one client'
    >>> lines[3].split(" (")[0]
    'client-side        p50 33.8 ms, p99 57.6 ms'
    >>> print(lines[4].replace(", ", ",\\n"))
    alert              EndpointLatencyHigh fired when server-side p99 reached 24.0 ms,
    above its 10 ms threshold (during the burst)
    """
    def pct(key: str) -> str:
        value = records.get(key)
        return f"{100 * value:.2f} %" if isinstance(value, (int, float)) else "–"

    def ms(key: str) -> str:
        value = records.get(key)
        return f"{value:.1f} ms" if isinstance(value, (int, float)) else "–"

    threshold = records.get("latency_alert_ms")
    fired = records.get("alerts_fired") or []
    if not isinstance(threshold, (int, float)):
        alert = ", ".join(fired) or "none fired"
    elif "EndpointLatencyHigh" in fired:
        alone = records.get("server_p99_one_client_ms")
        when = ("already from one client, before the burst"
                if isinstance(alone, (int, float)) and alone > threshold else "during the burst")
        alert = (f"EndpointLatencyHigh fired when server-side p99 reached "
                 f"{ms('alert_value_ms')}, above its {threshold:g} ms threshold ({when})")
    else:
        alert = (f"EndpointLatencyHigh did not fire: server-side p99 stayed at or under its "
                 f"{threshold:g} ms threshold")
    lines = [f"test accuracy      {pct('test_accuracy')} (training, on the "
             f"{records.get('test_images', '–')} test images)",
             f"endpoint accuracy  {pct('endpoint_accuracy')} (the same images through the "
             f"endpoint, {records.get('replicas_healthy', '–')} replicas)",
             f"server-side p99    {ms('server_p99_ms')} under the burst, "
             f"{ms('server_p99_one_client_ms')} from one client (the replicas' histogram, "
             "as on the dashboard)",
             f"client-side        p50 {ms('client_p50_ms')}, p99 {ms('client_p99_ms')} "
             f"({records.get('requests', '–')} requests from "
             f"{records.get('concurrency', '–')} threads in the notebook's kernel)",
             f"alert              {alert}"]
    if "precision" in records:
        lines.append(f"training           {records.get('train_seconds', '–')} s in "
                     f"{records['precision']}")
    return lines


def demo(ctx: typer.Context,
         epochs: int | None = typer.Option(None, "--epochs", metavar="N",
                                           help="Training epochs (default: the notebook's)."),
         requests: int | None = typer.Option(None, "--requests", metavar="N",
                                             help="Requests in the traffic burst (default: "
                                                  "the notebook's)."),
         out: Path = typer.Option(Path("build/demo"), "--out", metavar="DIR",
                                  help="Directory for the notebook, report and plots."),
         timeout: float = typer.Option(600.0, "--timeout", metavar="SECONDS",
                                       help="Seconds any one cell may run."),
         ) -> None:
    """Run the end-to-end demo (notebooks/00_quickstart.ipynb) and print a summary.

    Prints each stage as it starts, then test and endpoint accuracy, server-side and
    client-side latency, and why the latency alert fired (or did not).
    """

    notebook = quickstart_notebook()
    out = out.expanduser().resolve()
    parameters: dict[str, Any] = {"out_dir": str(out)}
    if epochs is not None:
        parameters["epochs"] = epochs
    if requests is not None:
        parameters["requests"] = requests
    run = run_in_stages(ctx, notebook, out / QUICKSTART, parameters, timeout=timeout,
                        what="demo")
    typer.echo(f"done in {run.seconds:.0f} s")
    for line in summary(run.records):
        typer.echo(f"  {line}")
    typer.echo(f"  notebook           {run.output}")
    if run.report:
        typer.echo(f"  report             {run.report}")
    for png in sorted(out.glob("*.png")):
        typer.echo(f"  plot               {png}")


def run_in_stages(ctx: typer.Context, notebook: Path, output: Path, parameters: dict[str, Any],
                  *, timeout: float, what: str, records: Path | None = None) -> Any:
    """Run a demo notebook headless, echoing each section as it starts; exit on failure.

    The kernel sees the same configuration as the command. ``records`` (a path) keeps the
    notebook's records as JSON, also when it fails. Returns the finished
    :class:`~hybridnb.notebooks.runner.NotebookRun`.
    """
    from ..fileio import atomic_write_text
    from ..notebooks.runner import run_notebook
    from .common import options

    typer.echo(f"running {notebook.name} headless into {output.parent}")
    start = time.monotonic()

    def stage(title: str) -> None:
        typer.echo(f"  [{elapsed(time.monotonic() - start)}] {title}")

    with options(ctx).for_children():  # the kernel sees the same config
        run = run_notebook(notebook, output, parameters, timeout=timeout, report=True,
                           on_section=stage)
    if records is not None:
        atomic_write_text(records, json.dumps(run.records, indent=2) + "\n")
    if not run.ok:
        where = f" at cell [{run.failed_cell}]" if run.failed_cell is not None else ""
        typer.echo(f"{what} {run.outcome.value}{where} after {run.seconds:.0f} s: "
                   f"{run.error}\nthe executed notebook (with the error) is {run.output}",
                   err=True)
        raise typer.Exit(run.exit_code)
    return run
