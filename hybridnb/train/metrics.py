"""Live training metrics: read the run's JSON lines, render Prometheus gauges, plot.

Rank 0 appends one JSON object per line to ``RUN_DIR/metrics.jsonl``: ``kind: step``
(loss, learning rate, step time, samples/s), ``kind: epoch`` (validation accuracy and
loss) and ``kind: final`` (test accuracy). A restarted attempt replays steps it already
logged; readers keep the latest line for each step.

>>> rows = [{"kind": "step", "step": 1, "loss": 2.0, "lr": 0.1, "step_seconds": 0.5,
...          "samples_per_second": 128.0},
...         {"kind": "epoch", "step": 1, "epoch": 1, "val_accuracy": 0.5}]
>>> print(prometheus_text(rows, run="demo").splitlines()[2])
hybridnb_train_loss{run="demo"} 2.0
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from prometheus_client import CollectorRegistry

METRICS = "metrics.jsonl"

#: Gauge name -> (field in the metrics lines, help text). The one place these help texts
#: are written: monitoring's table of families (:mod:`hybridnb.monitor.names`) reads them.
GAUGES = {
    "hybridnb_train_loss": ("loss", "Mean training loss over the latest logged window."),
    "hybridnb_train_accuracy": ("accuracy", "Latest validation (or final test) accuracy, 0-1."),
    "hybridnb_train_samples_per_second": (
        "samples_per_second", "Training throughput over all ranks in the latest logged window."),
    "hybridnb_train_step_seconds": (
        "step_seconds", "Mean wall time of an optimizer step over the latest logged window."),
    "hybridnb_train_learning_rate": ("lr", "Learning rate of the latest step."),
}


def dedupe(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the latest line per ``(kind, step)``, in step order (restarts replay steps)."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        latest[(str(row.get("kind")), int(row.get("step", 0)))] = row
    order = {"step": 0, "epoch": 1, "final": 2}
    return sorted(latest.values(), key=lambda r: (int(r.get("step", 0)),
                                                  order.get(str(r.get("kind")), 3)))


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every metrics line of a run (deduplicated); ``[]`` before the first one."""
    return MetricsFollower(run_dir).poll(all_rows=True)


class MetricsFollower:
    """Reads new lines of a growing ``metrics.jsonl`` (a partial last line waits).

    ``keep=False`` forgets rows once returned, for followers that live as long as a run
    (the monitoring collector).
    """

    def __init__(self, run_dir: str | os.PathLike[str], keep: bool = True):
        self.path = Path(run_dir) / METRICS
        self.offset = 0
        self.keep = keep
        self.rows: list[dict[str, Any]] = []

    def poll(self, all_rows: bool = False) -> list[dict[str, Any]]:
        """New rows since the last call (or all of them, deduplicated)."""
        new: list[dict[str, Any]] = []
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if line.strip():
                new.append(json.loads(line))
        self.offset += end
        if self.keep:
            self.rows += new
        return dedupe(self.rows) if all_rows else new


def latest_values(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The newest value of each gauge's field; accuracy from epoch or final lines."""
    out: dict[str, float] = {}
    for row in dedupe(rows):
        for field in ("loss", "samples_per_second", "step_seconds", "lr"):
            if row.get("kind") == "step" and row.get(field) is not None:
                out[field] = float(row[field])
        acc = row.get("val_accuracy", row.get("test_accuracy"))
        if acc is not None:
            out["accuracy"] = float(acc)
    return out


def prometheus_text(rows: Sequence[dict[str, Any]], *, run: str = "train") -> str:
    """The run's latest values as Prometheus text (``hybridnb_train_*`` gauges)."""
    from prometheus_client import generate_latest

    return generate_latest(_registry(rows, run)).decode()


def _registry(rows: Sequence[dict[str, Any]], run: str) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    values = latest_values(rows)
    for name, (field, help_text) in GAUGES.items():
        gauge = Gauge(name, help_text, ["run"], registry=registry)
        if field in values:
            gauge.labels(run=run).set(values[field])
    return registry


def write_textfile(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], *,
                   run: str = "train") -> Path:
    """Write :func:`prometheus_text` atomically (node_exporter's textfile collector)."""
    from prometheus_client import write_to_textfile

    path = Path(path)
    write_to_textfile(str(path), _registry(rows, run))  # a temporary file, then a rename
    return path


class MetricsServer:
    """A run's gauges over HTTP (``GET /metrics``), for a real Prometheus to scrape.

    Each scrape reads the new lines of ``metrics.jsonl`` and renders
    :func:`prometheus_text`; only the newest line of each kind is kept, so a long run
    costs no memory. The process that follows a run starts one and records its ``url``
    as the run's ``address`` in the state store, where monitoring discovers it.

    >>> import tempfile, urllib.request
    >>> with MetricsServer(tempfile.mkdtemp(), run="demo") as server:
    ...     body = urllib.request.urlopen(server.url + "/metrics").read().decode()
    >>> "# TYPE hybridnb_train_loss gauge" in body
    True
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, run: str = "train",
                 host: str = "127.0.0.1", port: int = 0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        follower, lock = MetricsFollower(run_dir, keep=False), threading.Lock()
        kept: list[dict[str, Any]] = []

        def render() -> bytes:
            with lock:  # concurrent scrapes must not read the same lines twice
                rows = dedupe([*kept, *follower.poll()])
                kept[:] = {str(r.get("kind")): r for r in rows}.values()
                return prometheus_text(kept, run=run).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path.split("?")[0] == "/metrics"
                body = render() if found else b"not found: the metrics are at /metrics\n"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes are not news
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name=f"hybridnb-train-metrics-{run}")
        self._thread.start()

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plot_run(run: Any, ax: Axes | None = None) -> Figure:
    """Plot loss (left axis) and validation accuracy (right axis, %) against the step.

    ``run`` is a :class:`~hybridnb.train.TrainResult`, a run directory, or metrics rows.
    The title names the run and its test accuracy; one legend below the plot covers both
    axes; epoch ends are marked on the top axis. Returns the figure; never calls
    ``show()`` (works with the Agg backend).

    >>> fig = plot_run([{"kind": "step", "step": 1, "loss": 2.0}])
    >>> fig.axes[0].get_ylabel(), fig.axes[0].get_xlabel()
    ('training loss', 'optimizer step')
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    name = getattr(run, "name", None)
    if isinstance(run, (str, os.PathLike)):
        rows = read_metrics(run)
        try:  # the run's name, from the spec the launcher wrote beside the metrics
            name = json.loads((Path(run) / "spec.json").read_text(encoding="utf-8"))["name"]
        except (OSError, ValueError, KeyError, TypeError):
            name = None
    elif hasattr(run, "metrics"):
        rows = list(run.metrics)
    else:
        rows = dedupe(run)
    if ax is None:
        # Constrained layout: the axis labels and the legend below stay inside the image.
        fig = Figure(figsize=(6.4, 3.8), layout="constrained")
        ax = fig.add_subplot()
    figure = ax.get_figure()
    steps = [r for r in rows if r.get("kind") == "step" and r.get("loss") is not None]
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], color="#1f77b4",
            linewidth=1.6, label="training loss")
    ax.set_xlabel("optimizer step", fontsize="small")
    ax.set_ylabel("training loss", fontsize="small")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize="small")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    handles = ax.get_legend_handles_labels()[0]
    epochs = [r for r in rows if r.get("val_accuracy") is not None]
    if epochs:
        acc = ax.twinx()
        acc.plot([r["step"] for r in epochs], [100 * r["val_accuracy"] for r in epochs],
                 "o-", color="#ff7f0e", linewidth=1.4, markersize=4,
                 label="validation accuracy")
        acc.set_ylabel("validation accuracy (%)", fontsize="small")
        acc.set_ylim(0, 102)
        acc.tick_params(labelsize="small")
        handles += acc.get_legend_handles_labels()[0]
        top = ax.secondary_xaxis("top")
        every = -(-len(epochs) // 10)  # at most ten epoch labels
        marks = epochs[every - 1::every]
        top.set_xticks([r["step"] for r in marks], [str(r.get("epoch", "")) for r in marks])
        top.tick_params(labelsize="x-small", length=2)
        top.set_xlabel("epoch", fontsize="x-small")
    final = [r for r in rows if r.get("kind") == "final"]
    title = name or "training"
    if final:
        title += f" — test accuracy {100 * final[-1]['test_accuracy']:.1f} %"
    ax.set_title(title, fontsize="medium")
    if steps or epochs:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncol=len(handles), fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no step logged yet", ha="center", va="center",
                transform=ax.transAxes, color="#777777")
    assert figure is not None
    return figure  # type: ignore[return-value]


class LivePlot:
    """A plot updated in place in a notebook (an IPython display handle); inert elsewhere."""

    def __init__(self, name: str):
        self.name = name
        self.handle: Any = None
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
        self.active = shell is not None and hasattr(shell, "kernel")

    def update(self, rows: Sequence[dict[str, Any]]) -> None:
        if not self.active or not rows:
            return
        from IPython.display import display

        fig = plot_run(rows)
        fig.axes[0].set_title(self.name)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
