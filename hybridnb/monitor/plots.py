"""Plots for notebooks: endpoints, training, clusters, and a live dashboard.

Every ``plot_*`` function takes a :class:`~hybridnb.monitor.query.Monitor` (default: the
embedded store), ``ax=None`` and returns the figure; none calls ``plt.show()``.
:func:`dashboard` draws all of them in one figure; with ``live=True`` in a notebook it
redraws in place through an IPython display handle, a bounded number of times, until
:meth:`LiveDashboard.stop`. Under papermill or a plain interpreter it renders once.

The panels read like a Grafana dashboard's: a title with the unit, one short legend
entry per router, replica, canary, run or cluster (``router``, ``replica-0``,
``canary``, the run's name) in a colour that stays the same in every panel, time ticks
as ``HH:MM:SS`` in the local time zone, and an empty panel that says why it is empty
("no training run recorded in this window"), never a line drawn at zero instead.
The PromQL behind each panel is in :data:`QUERIES`, and works the same against a real
Prometheus.

>>> import matplotlib; matplotlib.use("Agg")
>>> import tempfile, os
>>> fig = plot_requests(Monitor(store_path=os.path.join(tempfile.mkdtemp(), "m.db")))
>>> fig.axes[0].get_title()
'Requests per second (req/s)'
>>> fig.axes[0].texts[0].get_text()
'no endpoint was monitored in this window'
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .query import Monitor

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

_DUR = "hybridnb_endpoint_request_duration_seconds_bucket"
_REQ = "hybridnb_endpoint_requests_total"
_BY = "name, instance, role, replica, track"

#: The PromQL of every panel, by what it shows (the same text works in Prometheus).
QUERIES: dict[str, str] = {
    "latency_p50": f"histogram_quantile(0.5, sum by (le, {_BY}) (rate({_DUR}[1m])))",
    "latency_p99": f"histogram_quantile(0.99, sum by (le, {_BY}) (rate({_DUR}[1m])))",
    "router_p50": "histogram_quantile(0.5, sum by (le, name) "
                  "(rate(hybridnb_router_request_duration_seconds_bucket[1m])))",
    "router_p99": "histogram_quantile(0.99, sum by (le, name) "
                  "(rate(hybridnb_router_request_duration_seconds_bucket[1m])))",
    "requests": f"sum by ({_BY}) (rate({_REQ}[1m]))",
    "router_requests": "sum by (name) (rate(hybridnb_router_requests_total[1m]))",
    "errors": f'sum by (name) (rate({_REQ}{{code=~"5.."}}[1m]))',
    "rejected": "sum by (name) (rate(hybridnb_endpoint_rejected_total[1m]))",
    "endpoint_up": 'up{job="hybridnb-endpoint"}',
    "replicas_up": 'sum by (name) (up{job="hybridnb-endpoint", role!="router"})',
    "queue": f"sum by ({_BY}) (hybridnb_endpoint_queue_depth)",
    "train_loss": "hybridnb_train_loss",
    "train_accuracy": "hybridnb_train_accuracy",
    "workers": "sum by (name, instance) (dask_scheduler_workers)",
    "memory": 'sum by (name) (dask_worker_memory_bytes{type!="spilled"})',
}

#: Why a panel is empty, by panel.
EMPTY = {
    "endpoint": "no endpoint was monitored in this window",
    "requests": "no requests in this window",
    "training": "no training run recorded in this window",
    "cluster": "no Dask cluster was monitored in this window",
}

ROUTER_COLOUR = "#555555"
CANARY_COLOUR = "#ff7f0e"
# Replicas by slot number; orange (canaries) and red (errors) are kept out.
REPLICA_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#bcbd22",
                   "#e377c2", "#7f7f7f")
ERROR_COLOUR, REFUSED_COLOUR = "#d62728", "#9467bd"
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                  "#e377c2", "#17becf")


# ------------------------------------------------------------------------ naming, colour

def series_name(labels: dict[str, Any], *, with_endpoint: bool = False) -> str:
    """The short legend name of a series: ``router``, ``replica-0``, ``canary``, a run.

    >>> series_name({"role": "replica", "replica": "replica-1", "name": "digits"})
    'replica-1'
    >>> series_name({"role": "replica", "replica": "replica-2", "track": "canary"})
    'canary'
    >>> series_name({"instance": "127.0.0.1:9000"})
    '127.0.0.1:9000'
    """
    def text(key: str) -> str:
        value = labels.get(key)
        return "" if value is None or value != value else str(value)  # NaN: absent

    if text("role") == "router":
        short = "router"
    elif text("track") == "canary":
        short = "canary"
    else:
        short = text("replica") or text("run") or text("name") or text("instance") or "value"
    endpoint = text("name")
    if with_endpoint and endpoint and endpoint != short:
        return f"{endpoint} {short}"
    return short


def series_colour(name: str, order: list[str]) -> str:
    """A colour that stays with ``name`` across panels (replica slot, or its rank).

    >>> series_colour("replica-1", []), series_colour("router", [])
    ('#2ca02c', '#555555')
    """
    short = name.rsplit(" ", 1)[-1]
    if short == "router":
        return ROUTER_COLOUR
    if short.startswith("canary"):
        return CANARY_COLOUR
    if short.startswith("replica-") and short[8:].isdigit():
        return REPLICA_COLOURS[int(short[8:]) % len(REPLICA_COLOURS)]
    rank = order.index(name) if name in order else len(order)
    return SERIES_COLOURS[rank % len(SERIES_COLOURS)]


# ------------------------------------------------------------------------ axes helpers

def _axes(ax: Axes | None) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    from matplotlib.figure import Figure

    # A bare Figure, not pyplot: no global figure list to leak, nothing shown by itself.
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    return fig, fig.add_subplot()


def _local_tz() -> Any:
    from datetime import datetime

    return datetime.now().astimezone().tzinfo


def time_axis(ax: Axes) -> None:
    """Ticks as ``HH:MM:SS`` in local time, a few of them, and the axis labelled."""
    import matplotlib.dates as mdates

    tz = _local_tz()
    locator = mdates.AutoDateLocator(tz=tz, minticks=3, maxticks=8)
    # Whole seconds at least: no ``24:43.500000`` ticks, whatever the span.
    locator.intervald[mdates.SECONDLY] = [1, 2, 5, 10, 15, 30]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=tz))
    from datetime import datetime

    ax.set_xlabel(f"time ({datetime.now().astimezone().tzname()})", fontsize="small")
    ax.tick_params(axis="both", labelsize="small")
    ax.grid(True, color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def _times(part: pd.DataFrame) -> Any:
    # Naive UTC datetimes: matplotlib reads them as UTC and the formatter shows local time.
    return part["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()


def _groups(frame: pd.DataFrame, *, with_endpoint: bool | None = None
            ) -> list[tuple[str, pd.DataFrame]]:
    """``(legend name, rows)`` per series, in a stable order; names unique."""
    if frame.empty:
        return []
    if with_endpoint is None:
        with_endpoint = "name" in frame and frame["name"].nunique() > 1
    out: dict[str, list[pd.DataFrame]] = {}
    for _series, part in frame.groupby("series", sort=True):
        labels = part.iloc[0].to_dict()
        out.setdefault(series_name(labels, with_endpoint=bool(with_endpoint)), []).append(part)
    import pandas as pd

    def order(name: str) -> tuple[int, str]:
        short = name.rsplit(" ", 1)[-1]
        return (0 if short == "router" else 2 if short.startswith("canary") else 1, name)

    return [(name, pd.concat(parts).sort_values("time"))
            for name, parts in sorted(out.items(), key=lambda kv: order(kv[0]))]


def _plot(ax: Axes, frame: pd.DataFrame, *, scale: float = 1.0, style: str = "-",
          suffix: str = "", colour: str | None = None, order: list[str] | None = None,
          step: bool = False, label: str | None = None, **kw: Any) -> list[str]:
    """One line per series; returns the legend names drawn.

    ``label`` names the line when there is only one series (``"5xx"`` rather than the
    endpoint's name). Lines drawn first are wider, so replicas whose values coincide
    (round robin) all stay visible, one outlining the next.
    """
    names = []
    order = order if order is not None else []
    groups = _groups(frame)
    for i, (name, part) in enumerate(groups):
        if name not in order:
            order.append(name)
        width = 1.5 + 0.9 * min(3, len(groups) - 1 - i)
        text = label if label and len(groups) == 1 else f"{name}{suffix}"
        style_kw: dict[str, Any] = {"color": colour or series_colour(name, order),
                                    "label": text, "linewidth": width, **kw}
        x, y = _times(part), part["value"].to_numpy() * scale
        if step:
            ax.step(x, y, style, where="post", **style_kw)
        else:
            ax.plot(x, y, style, **style_kw)
        names.append(name)
    return names


def _empty(ax: Axes, message: str) -> None:
    """An empty panel: the reason in the middle, no line, no meaningless y ticks."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            color="#777777", fontsize="medium", wrap=True)
    ax.set_yticks([])
    ax.set_xticks([])
    ax.set_xlabel("")


def _note(ax: Axes, message: str) -> None:
    ax.text(0.99, 0.97, message, ha="right", va="top", transform=ax.transAxes,
            color="#777777", fontsize="small")


def _legend(ax: Axes, handles: list[Any] | None = None, **kw: Any) -> None:
    """Below the plot, as Grafana does: it never hides a line."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    if not handles:
        return
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.22),
              ncol=min(6, len(handles)), fontsize="small", frameon=False,
              handlelength=1.6, columnspacing=1.2, **kw)


def _monitor(monitor: Monitor | None) -> Monitor:
    return monitor if monitor is not None else Monitor()


def _q(m: Monitor, key: str, window: str, end: float | None) -> pd.DataFrame:
    return m.query(QUERIES[key], window=window, end=end)


def _endpoint_seen(m: Monitor, window: str, end: float | None) -> bool:
    return not _q(m, "endpoint_up", window, end).empty


# ------------------------------------------------------------------------------ panels

def plot_latency(monitor: Monitor | None = None, *, window: str = "15m",
                 ax: Axes | None = None, end: float | None = None) -> Figure:
    """Server-side latency per replica (p99 solid, p50 dashed) and at the router, in ms."""
    from matplotlib.lines import Line2D

    m = _monitor(monitor)
    fig, ax = _axes(ax)
    ax.set_title("Request latency p99 / p50 (ms)")
    order: list[str] = []
    p99 = _plot(ax, _q(m, "latency_p99", window, end), scale=1000.0, order=order)
    p50 = _plot(ax, _q(m, "latency_p50", window, end), scale=1000.0, style="--",
                order=order)
    router = _q(m, "router_p99", window, end)
    if not router.empty:
        router = router.assign(role="router")
        p99 += _plot(ax, router, scale=1000.0, order=order)
        p50 += _plot(ax, _q(m, "router_p50", window, end).assign(role="router"),
                     scale=1000.0, style="--", order=order)
    if not p99 and not p50:
        _empty(ax, EMPTY["requests" if _endpoint_seen(m, window, end) else "endpoint"])
        return fig
    time_axis(ax)
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    handles = [Line2D([], [], color=series_colour(n, order), linewidth=2, label=n)
               for n in dict.fromkeys(p99 + p50)]
    handles += [Line2D([], [], color="#333333", linestyle="-", label="p99"),
                Line2D([], [], color="#333333", linestyle="--", label="p50")]
    _legend(ax, handles)
    return fig


def plot_requests(monitor: Monitor | None = None, *, window: str = "15m",
                  ax: Axes | None = None, end: float | None = None) -> Figure:
    """Requests per second answered by each replica, and through the router."""
    m = _monitor(monitor)
    fig, ax = _axes(ax)
    ax.set_title("Requests per second (req/s)")
    order: list[str] = []
    drawn = _plot(ax, _q(m, "router_requests", window, end).assign(role="router"),
                  order=order)
    drawn += _plot(ax, _q(m, "requests", window, end), order=order)
    if not drawn:
        _empty(ax, EMPTY["requests" if _endpoint_seen(m, window, end) else "endpoint"])
        return fig
    time_axis(ax)
    ax.set_ylabel("req/s")
    ax.set_ylim(bottom=0)
    _legend(ax)
    return fig


def plot_errors(monitor: Monitor | None = None, *, window: str = "15m",
                ax: Axes | None = None, end: float | None = None) -> Figure:
    """5xx answers and requests refused by admission control (503), per second."""
    m = _monitor(monitor)
    fig, ax = _axes(ax)
    ax.set_title("Errors: 5xx and refused (req/s)")
    requests = _q(m, "requests", window, end)
    if requests.empty:
        _empty(ax, EMPTY["requests" if _endpoint_seen(m, window, end) else "endpoint"])
        return fig
    # No 5xx series at all means no 5xx answer: zero over the time requests were seen.
    zero = requests.groupby("time", as_index=False)["value"].sum().assign(
        value=0.0, series="zero")
    errors = _q(m, "errors", window, end)
    refused = _q(m, "rejected", window, end)
    total = float(errors["value"].sum()) + float(refused["value"].sum())
    _plot(ax, errors if not errors.empty else zero, colour=ERROR_COLOUR, suffix=" 5xx",
          label="5xx")
    _plot(ax, refused if not refused.empty else zero, colour=REFUSED_COLOUR, style="--",
          suffix=" refused", label="refused (503)")
    if total == 0:
        _note(ax, "no errors in this window")
    time_axis(ax)
    ax.set_ylabel("req/s")
    top = max(1.0, ax.get_ylim()[1])
    ax.set_ylim(bottom=-0.02 * top, top=top)  # a zero line stays visible above the axis
    _legend(ax)
    return fig


def plot_replicas(monitor: Monitor | None = None, *, window: str = "15m",
                  ax: Axes | None = None, end: float | None = None) -> Figure:
    """Replicas up per endpoint (the router is not a replica), and queue depth."""
    from matplotlib.ticker import MaxNLocator

    m = _monitor(monitor)
    fig, ax = _axes(ax)
    ax.set_title("Replicas up and queue depth (count)")
    up = _q(m, "replicas_up", window, end)
    if up.empty:
        _empty(ax, EMPTY["endpoint"])
        return fig
    several = up["name"].nunique() > 1
    for name, part in _groups(up, with_endpoint=False):
        ax.step(_times(part), part["value"].to_numpy(), where="post", color="#222222",
                linewidth=2.2, label=f"replicas up{f' ({name})' if several else ''}")
    _plot(ax, _q(m, "queue", window, end), style=":", suffix=" queue")
    time_axis(ax)
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0, top=max(2.0, ax.get_ylim()[1] * 1.15))
    _legend(ax)
    return fig


def plot_training(monitor: Monitor | None = None, *, window: str = "15m",
                  ax: Axes | None = None, end: float | None = None) -> Figure:
    """Training loss per run (left axis) and its accuracy (dashed, right axis, %)."""
    m = _monitor(monitor)
    fig, ax = _axes(ax)
    ax.set_title("Training: loss and accuracy (%)")
    loss = _q(m, "train_loss", window, end)
    if loss.empty:
        _empty(ax, EMPTY["training"])
        return fig
    order: list[str] = []
    _plot(ax, loss, order=order, suffix=" loss")
    time_axis(ax)
    ax.set_ylabel("loss")
    ax.set_ylim(bottom=0)
    acc = _q(m, "train_accuracy", window, end)
    handles = ax.get_legend_handles_labels()[0]
    if not acc.empty:
        right = ax.twinx()
        _plot(right, acc, scale=100.0, style="--", order=order, suffix=" accuracy")
        right.set_ylabel("accuracy (%)")
        right.set_ylim(0, 125)  # its line sits above the loss's, not on it
        right.set_yticks([0, 20, 40, 60, 80, 100])
        right.tick_params(labelsize="small")
        handles += right.get_legend_handles_labels()[0]
    _legend(ax, handles)
    return fig


def plot_cluster(monitor: Monitor | None = None, *, window: str = "15m",
                 ax: Axes | None = None, end: float | None = None) -> Figure:
    """Dask workers per cluster (left axis) and their memory (dashed, right axis, GiB)."""
    from matplotlib.ticker import MaxNLocator

    m = _monitor(monitor)
    fig, ax = _axes(ax)
    ax.set_title("Dask clusters: workers and memory (GiB)")
    workers = _q(m, "workers", window, end)
    if workers.empty:
        _empty(ax, EMPTY["cluster"])
        return fig
    order: list[str] = []
    _plot(ax, workers, order=order, suffix=" workers", step=True)
    time_axis(ax)
    ax.set_ylabel("workers")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0, top=max(2.0, float(workers["value"].max()) * 1.6))
    handles = ax.get_legend_handles_labels()[0]
    memory = _q(m, "memory", window, end)
    if not memory.empty:
        right = ax.twinx()
        _plot(right, memory, scale=1 / 2**30, style="--", order=order, suffix=" memory")
        right.set_ylabel("memory (GiB)")
        # Memory at about 80 % of the height; workers (left) lower: lines apart.
        right.set_ylim(0, 1.25 * max(float(memory["value"].max()) / 2**30, 1e-3))
        right.tick_params(labelsize="small")
        handles += right.get_legend_handles_labels()[0]
    _legend(ax, handles)
    return fig


Panel = Callable[..., "Figure"]
PANELS: tuple[Panel, ...] = (plot_latency, plot_requests, plot_errors, plot_replicas,
                             plot_training, plot_cluster)


def _align(axes: Iterable[Axes], start: float, end: float) -> None:
    """The same time span on every panel that has data: the span of all their data,
    within the window, so panels line up as in Grafana and no panel is mostly blank."""
    import matplotlib.dates as mdates
    import numpy as np

    drawn = [ax for ax in axes if ax.lines]
    spans = [np.asarray(line.get_xdata(), dtype="datetime64[ns]")
             for ax in drawn for line in ax.lines]
    spans = [x for x in spans if x.size]
    if not spans:
        return
    allx = np.concatenate(spans)
    lo = max(np.datetime64(int(start * 1e9), "ns"), allx.min())
    hi = min(np.datetime64(int(end * 1e9), "ns"), allx.max())
    if hi - lo < np.timedelta64(10, "s"):  # a few seconds at least: readable ticks
        hi = lo + np.timedelta64(10, "s")
    for ax in drawn:
        ax.set_xlim(mdates.date2num(lo), mdates.date2num(hi))


def render(monitor: Monitor | None = None, *, window: str = "15m",
           fig: Figure | None = None, end: float | None = None) -> Figure:
    """All panels in one 3×2 figure (redrawn into ``fig`` when given)."""
    from matplotlib.figure import Figure

    from .store import parse_duration

    m = _monitor(monitor)
    end = time.time() if end is None else end
    if fig is None:
        fig = Figure(figsize=(13, 11), layout="constrained")
    fig.clear()
    axes = fig.subplots(3, 2).ravel()
    for panel, ax in zip(PANELS, axes, strict=False):
        try:
            panel(m, window=window, ax=ax, end=end)
        except Exception as exc:  # one broken panel must not blank the dashboard
            logger.warning("panel %s failed: %s", panel.__name__, exc)
            ax.clear()
            _empty(ax, f"{panel.__name__} failed: {exc}"[:120])
    _align(axes, end - parse_duration(window), end)
    stamp = time.strftime("%H:%M:%S", time.localtime(end))
    fig.suptitle(f"hybridnb — last {window} to {stamp}", fontsize="large",
                 fontweight="bold")
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
              save: str | Path | None = None, end: float | None = None
              ) -> Figure | LiveDashboard:
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
    end:
        The end of the window (Unix time; default now): render recorded data as it was.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import tempfile, os
    >>> fig = dashboard(Monitor(store_path=os.path.join(tempfile.mkdtemp(), "m.db")))
    >>> [ax.get_title() for ax in fig.axes][4]
    'Training: loss and accuracy (%)'
    """
    monitor = Monitor("prometheus", targets) if isinstance(targets, str) else _monitor(targets)
    if live and _interactive():
        return LiveDashboard(monitor, window, refresh, max_refreshes)
    fig = render(monitor, window=window, end=end)
    if save is not None:
        fig.savefig(save, dpi=90)
    return fig
