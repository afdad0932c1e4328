"""The dashboard and the training plot, rendered from what real collectors recorded.

``data/demo-metrics.jsonl.gz`` is what the embedded collector stored while ``hybridnb
demo`` ran (a Dask cluster, a 2-rank training run, an endpoint with a router and two
replicas under traffic); ``data/demo-run-metrics.jsonl`` is that training run's own
metrics lines. ``data/record.py`` saves them again from a new demo. The figures are
inspected as objects (Agg): titles, axis labels, legends, tick texts, the empty-panel
messages.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

import matplotlib
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hybridnb.monitor import Monitor, SampleStore, dashboard
from hybridnb.monitor.plots import EMPTY, PANELS, LiveDashboard, plot_latency
from hybridnb.train.metrics import plot_run

matplotlib.use("Agg")

DATA = Path(__file__).resolve().parent / "data"
HHMMSS = re.compile(r"^\d\d:\d\d:\d\d$")
TITLES = ["Request latency p99 / p50 (ms)", "Requests per second (req/s)",
          "Errors: 5xx and refused (req/s)", "Replicas up and queue depth (count)",
          "Training: loss and accuracy (%)", "Dask clusters: workers and memory (GiB)"]


def load_recording(path: Path) -> float:
    """Fill a real store at ``path`` with the recorded samples; returns the end time."""
    lines = gzip.decompress((DATA / "demo-metrics.jsonl.gz").read_bytes()).splitlines()
    head, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    store = SampleStore(path, retention="1000d")
    timed, stale = [], []
    for row in rows:
        key = (row["name"], tuple(sorted(row["labels"].items())))
        for ts, value in zip(row["ts"], row["values"], strict=True):
            if value is None:
                stale.append((ts, key))
            else:
                timed.append((key, ts, value))
    store.append_at(timed)
    for ts, key in stale:
        store.append_keyed((), ts, stale=[key])
    return float(head["end"])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("recorded") / "m.db"
    end = load_recording(path)
    return Monitor(store_path=path), end


def drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()  # tick labels exist once drawn
    return fig


def panels(fig: Figure) -> dict[str, object]:
    """Each panel's main axes by title (twin axes for a right-hand scale have none)."""
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}


def legend(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg is not None else []


def test_dashboard_reads_like_a_grafana_board(recorded):
    mon, end = recorded
    fig = drawn(dashboard(mon, window="5m", end=end))
    by_title = panels(fig)
    assert list(by_title) == TITLES
    for title, ax in by_title.items():
        assert ax.get_xlabel().startswith("time ("), title
        ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert len(ticks) >= 3 and all(HHMMSS.match(t) for t in ticks), (title, ticks)
        assert not [t for t in ax.texts if "no data" in t.get_text()]
        assert ax.lines, f"{title}: nothing drawn from the recording"
    latency, requests, errors, replicas, training, clusters = by_title.values()
    assert legend(latency) == ["replica-0", "replica-1", "router", "p99", "p50"]
    assert latency.get_ylabel() == "ms"
    assert legend(requests) == ["router", "replica-0", "replica-1"]
    assert legend(errors) == ["5xx", "refused (503)"]
    assert "no errors in this window" in [t.get_text() for t in errors.texts]
    assert legend(replicas) == ["replicas up", "replica-0 queue", "replica-1 queue"]
    # Two replicas behind a router: the router is not counted as a replica.
    up = next(line for line in replicas.lines if line.get_label() == "replicas up")
    assert max(up.get_ydata()) == 2
    assert legend(training) == ["digits-cnn loss", "digits-cnn accuracy"]
    [cluster] = {t.split()[0] for t in legend(clusters)}
    assert legend(clusters) == [f"{cluster} workers", f"{cluster} memory"]
    # A replica keeps its colour from panel to panel; the router has its own.
    colours = {}
    for ax in (latency, requests, replicas):
        for line in ax.lines:
            name = line.get_label().split()[0]
            if name.startswith(("replica-", "router")):
                colours.setdefault(name, set()).add(line.get_color())
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == 3
    # One time span on every panel: they line up.
    assert len({ax.get_xlim() for ax in by_title.values()}) == 1


def test_empty_panels_say_why(tmp_path):
    fig = drawn(dashboard(Monitor(store_path=tmp_path / "empty.db"), window="5m"))
    by_title = panels(fig)
    assert list(by_title) == TITLES
    messages = {title: [t.get_text() for t in ax.texts] for title, ax in by_title.items()}
    assert messages == {TITLES[0]: [EMPTY["endpoint"]], TITLES[1]: [EMPTY["endpoint"]],
                        TITLES[2]: [EMPTY["endpoint"]], TITLES[3]: [EMPTY["endpoint"]],
                        TITLES[4]: ["no training run recorded in this window"],
                        TITLES[5]: ["no Dask cluster was monitored in this window"]}
    for ax in by_title.values():  # nothing drawn under the message: no flat zero line
        assert len(ax.lines) == 0 and ax.get_legend() is None and list(ax.get_yticks()) == []


def test_an_endpoint_without_traffic_says_so(tmp_path):
    store = SampleStore(tmp_path / "m.db")
    now = time.time()
    for i in range(10):
        store.append([("up", {"job": "hybridnb-endpoint", "instance": "127.0.0.1:1",
                              "name": "m", "role": "replica", "replica": "replica-0"},
                       1.0)], ts=now - 10 + i)
    fig = drawn(dashboard(Monitor(store_path=tmp_path / "m.db"), window="5m", end=now))
    by_title = panels(fig)
    assert [t.get_text() for t in by_title[TITLES[0]].texts] == [EMPTY["requests"]]
    assert [t.get_text() for t in by_title[TITLES[1]].texts] == [EMPTY["requests"]]
    assert legend(by_title[TITLES[3]]) == ["replicas up"]


def test_each_panel_takes_ax_and_returns_the_figure(recorded):
    mon, end = recorded
    fig = Figure()
    axes = fig.subplots(1, len(PANELS))
    for panel, ax in zip(PANELS, axes, strict=True):
        assert panel(mon, window="5m", ax=ax, end=end) is fig
    alone = plot_latency(mon, window="5m", end=end)
    assert alone is not fig and alone.axes[0].get_title() == TITLES[0]


def test_dashboard_renders_once_and_saves(recorded, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    mon, end = recorded
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("show() was called"))
    fig = dashboard(mon, window="5m", live=True, save=tmp_path / "d.png", end=end)
    # Not in a Jupyter kernel: live falls back to rendering once.
    assert not isinstance(fig, LiveDashboard)
    assert (tmp_path / "d.png").stat().st_size > 50_000
    assert plt.get_fignums() == []


def test_training_plot_has_its_labels_legend_and_title():
    rows = [json.loads(line) for line in (DATA / "demo-run-metrics.jsonl").read_text()
            .splitlines()]
    fig = drawn(plot_run(rows))
    loss, accuracy = fig.axes[:2]
    assert loss.get_xlabel() == "optimizer step" and loss.get_ylabel() == "training loss"
    assert accuracy.get_ylabel() == "validation accuracy (%)"
    assert legend(loss) == ["training loss", "validation accuracy"]
    final = [r for r in rows if r["kind"] == "final"][-1]
    assert loss.get_title() == f"training — test accuracy {100 * final['test_accuracy']:.1f} %"
    # Nothing is cut off: every label lies inside the saved image.
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for text in (loss.xaxis.label, loss.yaxis.label, accuracy.yaxis.label, loss.title,
                 *loss.get_legend().get_texts()):
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()


def test_training_plot_of_a_run_directory_names_the_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text((DATA / "demo-run-metrics.jsonl").read_text())
    (tmp_path / "spec.json").write_text(json.dumps({"name": "digits-cnn"}))
    assert plot_run(tmp_path).axes[0].get_title().startswith("digits-cnn — test accuracy")
