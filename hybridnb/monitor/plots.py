"""Plots for notebooks: endpoints, training, clusters, and a live dashboard.

Every ``plot_*`` function takes a :class:`~hybridnb.monitor.query.Monitor` (default: the
embedded store), ``ax=None`` and returns the figure; none calls ``plt.show()``.
:func:`dashboard` draws all of them in one figure; with ``live=True`` in a notebook it
redraws in place through an IPython display handle, a bounded number of times, until
:meth:`LiveDashboard.stop`. Under papermill or a plain interpreter it renders once.

>>> import matplotlib; matplotlib.use("Agg")
>>> import tempfile, os
>>> fig = plot_requests(Monitor(store_path=os.path.join(tempfile.mkdtemp(), "m.db")))
>>> fig.axes[0].get_title()
'Requests per second'
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .query import Monitor

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

_DUR = "hybridnb_endpoint_request_duration_seconds"
_REQ = "hybridnb_endpoint_requests_total"


def _axes(ax: Axes | None) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    from matplotlib.figure import Figure

    # A bare Figure, not pyplot: no global figure list to leak, nothing shown by itself.
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    return fig, fig.add_subplot()


def _lines(ax: Axes, frame: pd.DataFrame, prefix: str = "", unit: str = "") -> None:
    if frame.empty:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes,
                color="gray")
        return
    for series, part in frame.groupby("series", sort=True):
        label = prefix + str(series).split("{", 1)[-1].rstrip("}")
        ax.plot(part["time"], part["value"], label=label or prefix or "value")
    if unit:
        ax.set_ylabel(unit)
    if frame["series"].nunique() <= 8:
        ax.legend(fontsize="x-small", loc="upper left")
    ax.tick_params(axis="x", labelrotation=30, labelsize="x-small")


def _monitor(monitor: Monitor | None) -> Monitor:
    return monitor if monitor is not None else Monitor()


def plot_latency(monitor: Monitor | None = None, *, window: str = "15m",
                 ax: Axes | None = None) -> Figure:
    """Endpoint latency p50/p95/p99 (seconds) per instance."""
    m = _monitor(monitor)
    fig, ax = _axes(ax)
    for q in (0.5, 0.95, 0.99):
        _lines(ax, m.quantile(q, _DUR, by=["instance"], window=window), f"p{int(q * 100)} ",
               "seconds")
    ax.set_title("Endpoint latency")
    return fig


def plot_requests(monitor: Monitor | None = None, *, window: str = "15m",
                  ax: Axes | None = None) -> Figure:
    """Requests per second per instance."""
    fig, ax = _axes(ax)
    _lines(ax, _monitor(monitor).rate(_REQ, by=["instance"], window=window), unit="1/s")
    ax.set_title("Requests per second")
    return fig


def plot_errors(monitor: Monitor | None = None, *, window: str = "15m",
                ax: Axes | None = None) -> Figure:
    """5xx responses per second, and requests refused by admission control."""
    m = _monitor(monitor)
    fig, ax = _axes(ax)
    _lines(ax, m.rate(_REQ, {"code": "500"}, by=["instance"], window=window), "5xx ", "1/s")
    _lines(ax, m.rate("hybridnb_endpoint_rejected_total", by=["instance"], window=window),
           "rejected ", "1/s")
    ax.set_title("Errors")
    return fig


def plot_replicas(monitor: Monitor | None = None, *, window: str = "15m",
                  ax: Axes | None = None) -> Figure:
    """Endpoint replicas up (by name), and queue depth."""
    m = _monitor(monitor)
    fig, ax = _axes(ax)
    _lines(ax, m.query('count by (name) (up{job="hybridnb-endpoint"} == 1)', window=window),
           "up ")
    _lines(ax, m.query("sum by (name) (hybridnb_endpoint_queue_depth)", window=window),
           "queue ")
    ax.set_title("Replicas and queue")
    return fig


def plot_training(monitor: Monitor | None = None, *, window: str = "15m",
                  ax: Axes | None = None) -> Figure:
    """Training loss per run."""
    fig, ax = _axes(ax)
    _lines(ax, _monitor(monitor).query("hybridnb_train_loss", window=window), "loss ")
    ax.set_title("Training")
    return fig


def plot_cluster(monitor: Monitor | None = None, *, window: str = "15m",
                 ax: Axes | None = None) -> Figure:
    """Dask workers per scheduler, and worker memory (GiB)."""
    m = _monitor(monitor)
    fig, ax = _axes(ax)
    _lines(ax, m.query("sum by (instance) (dask_scheduler_workers)", window=window),
           "workers ")
    mem = m.query('sum by (instance) (dask_worker_memory_bytes{type!="spilled"})',
                  window=window)
    if not mem.empty:
        mem = mem.assign(value=mem["value"] / 2**30)
        _lines(ax, mem, "GiB ")
    ax.set_title("Clusters")
    return fig


PANELS = (plot_latency, plot_requests, plot_errors, plot_replicas, plot_training,
          plot_cluster)


def render(monitor: Monitor | None = None, *, window: str = "15m",
           fig: Figure | None = None) -> Figure:
    """All panels in one 3×2 figure (redrawn into ``fig`` when given)."""
    from matplotlib.figure import Figure

    m = _monitor(monitor)
    if fig is None:
        fig = Figure(figsize=(12, 10), layout="constrained")
    fig.clear()
    axes = fig.subplots(3, 2).ravel()
    for panel, ax in zip(PANELS, axes, strict=False):
        try:
            panel(m, window=window, ax=ax)
        except Exception as exc:  # one broken panel must not blank the dashboard
            logger.warning("panel %s failed: %s", panel.__name__, exc)
            ax.set_title(f"{panel.__name__}: {exc}"[:60])
    return fig


class LiveDashboard:
    """A dashboard redrawn in place every ``refresh`` seconds, ``max_refreshes`` times.

    Call :meth:`stop` (or let it reach its bound); the drawing thread then ends.
    """

    def __init__(self, monitor: Monitor, window: str, refresh: float, max_refreshes: int):
        self.monitor, self.window = monitor, window
        self.refresh, self.max_refreshes = refresh, max_refreshes
        self.figure = render(monitor, window=window)
        self.refreshes = 0
        self._stop = threading.Event()
        from IPython.display import display

        self._handle = display(self.figure, display_id=True)
        self._thread = threading.Thread(target=self._run, name="hybridnb-dashboard",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self.refreshes < self.max_refreshes and not self._stop.wait(self.refresh):
            render(self.monitor, window=self.window, fig=self.figure)
            if self._handle is not None:
                self._handle.update(self.figure)
            self.refreshes += 1

    def stop(self) -> None:
        """Stop refreshing (waits for the current redraw)."""
        self._stop.set()
        self._thread.join(timeout=60)

    def __repr__(self) -> str:
        return f"LiveDashboard({self.refreshes}/{self.max_refreshes} refreshes)"


def _interactive() -> bool:
    import os
    import sys

    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    # papermill runs a real kernel; its parameters cell sets no variable we can trust, but
    # it executes with PAPERMILL_* absent too, so live drawing is opt-in (live=True).
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell" \
        and not os.environ.get("PAPERMILL_EXECUTION")


def dashboard(targets: Monitor | str | None = None, window: str = "15m", ax: Any = None, *,
              live: bool = False, refresh: float = 5.0, max_refreshes: int = 720,
              save: str | Path | None = None) -> Figure | LiveDashboard:
    """The monitoring dashboard: latency, requests, errors, replicas, training, clusters.

    Parameters
    ----------
    targets:
        A :class:`Monitor`, a Prometheus URL, or ``None`` for the embedded store.
    window:
        How far back to plot.
    ax:
        Ignored for the whole dashboard (it needs six axes); pass ``ax`` to a
        ``plot_*`` function for one panel.
    live:
        In a Jupyter kernel, redraw in place every ``refresh`` seconds, at most
        ``max_refreshes`` times; returns a :class:`LiveDashboard` (call ``.stop()``).
        Elsewhere (papermill, scripts) the figure renders once.
    save:
        Also write the figure as a PNG there.
    """
    monitor = Monitor("prometheus", targets) if isinstance(targets, str) else _monitor(targets)
    if live and _interactive():
        return LiveDashboard(monitor, window, refresh, max_refreshes)
    fig = render(monitor, window=window)
    if save is not None:
        fig.savefig(save, dpi=80)
    return fig
