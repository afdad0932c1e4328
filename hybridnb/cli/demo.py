"""``hybridnb demo``: the main job, end to end on the embedded default.

Runs ``notebooks/00_quickstart.ipynb`` headless with papermill (the same runner as
``hybridnb run``) into ``--out``: the executed notebook, its HTML report, and the plots,
data, training run and metrics the notebook writes there. Then prints a summary: test
accuracy, the endpoint's p50/p99 latency, the alerts that fired, where the files are.
A failing cell exits with the runner's code (3 a cell raised, 4 timeout, 5 the kernel
died) and names the cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import UsageError

QUICKSTART = "00_quickstart.ipynb"


def quickstart_notebook() -> Path:
    """The quickstart notebook of this checkout (``notebooks/`` beside the package)."""
    path = Path(__file__).resolve().parents[2] / "notebooks" / QUICKSTART
    if not path.is_file():
        raise UsageError(f"{path} not found: 'hybridnb demo' runs the notebooks of a "
                         "source checkout (git clone, then 'make demo')")
    return path


def summary(records: dict[str, Any]) -> list[str]:
    """The summary lines of a demo run's records.

    >>> summary({"test_accuracy": 0.98, "p50_ms": 3.0, "p99_ms": 9.5,
    ...          "alerts_fired": ["EndpointLatencyHigh"]})[:2]
    ['test accuracy      98.00 %', 'endpoint latency   p50 3.0 ms, p99 9.5 ms']
    """
    def pct(key: str) -> str:
        value = records.get(key)
        return f"{100 * value:.2f} %" if isinstance(value, (int, float)) else "–"

    fired = records.get("alerts_fired") or []
    lines = [f"test accuracy      {pct('test_accuracy')}",
             f"endpoint latency   p50 {records.get('p50_ms', '–')} ms, "
             f"p99 {records.get('p99_ms', '–')} ms",
             f"endpoint accuracy  {pct('endpoint_accuracy')} over "
             f"{records.get('requests', '–')} requests to "
             f"{records.get('replicas_healthy', '–')} replicas",
             f"alerts fired       {', '.join(fired) if fired else 'none'}"]
    if "precision" in records:
        lines.append(f"training           {records.get('train_seconds', '–')} s in "
                     f"{records['precision']}")
    return lines


def demo(ctx: typer.Context,
         epochs: int | None = typer.Option(None, "--epochs",
                                           help="Training epochs (default: the notebook's)."),
         requests: int | None = typer.Option(None, "--requests",
                                             help="Requests of generated traffic."),
         out: Path = typer.Option(Path("build/demo"), "--out",
                                  help="Directory for the notebook, report and plots."),
         timeout: float = typer.Option(600.0, "--timeout", help="Seconds any cell may run."),
         ) -> None:
    """Run the end-to-end demo (notebooks/00_quickstart.ipynb) and print a summary."""
    from ..notebooks.runner import run_notebook
    from .common import options

    notebook = quickstart_notebook()
    out = out.expanduser().resolve()
    parameters: dict[str, Any] = {"out_dir": str(out)}
    if epochs is not None:
        parameters["epochs"] = epochs
    if requests is not None:
        parameters["requests"] = requests
    typer.echo(f"running {notebook.name} headless into {out} …")
    with options(ctx).for_children():  # the kernel sees the same config
        run = run_notebook(notebook, out / QUICKSTART, parameters, timeout=timeout,
                           report=True)
    if not run.ok:
        where = f" at cell [{run.failed_cell}]" if run.failed_cell is not None else ""
        typer.echo(f"demo {run.outcome.value}{where} after {run.seconds:.0f} s: {run.error}\n"
                   f"the executed notebook (with the error) is {run.output}", err=True)
        raise typer.Exit(run.exit_code)
    typer.echo(f"done in {run.seconds:.0f} s")
    for line in summary(run.records):
        typer.echo(f"  {line}")
    typer.echo(f"  notebook           {run.output}")
    if run.report:
        typer.echo(f"  report             {run.report}")
    for png in sorted(out.glob("*.png")):
        typer.echo(f"  plot               {png}")
