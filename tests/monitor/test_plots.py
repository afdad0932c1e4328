"""Plots render from real stored samples; the dashboard saves a PNG and never shows."""

from __future__ import annotations

import time

import matplotlib
import pytest

from hybridnb.monitor import Monitor, SampleStore, dashboard
from hybridnb.monitor.plots import PANELS, LiveDashboard

matplotlib.use("Agg")


@pytest.fixture
def monitor(tmp_path):
    store = SampleStore(tmp_path / "m.db")
    now = time.time()
    for i in range(60):
        base = {"job": "hybridnb-endpoint", "instance": "127.0.0.1:1", "name": "mlp"}
        samples = [("up", base, 1.0), ("hybridnb_endpoint_queue_depth", base, i % 3),
                   ("hybridnb_endpoint_requests_total", {**base, "code": "200"}, 10.0 * i),
                   ("hybridnb_train_loss", {"job": "hybridnb-train", "run": "r"}, 1 / (i + 1))]
        samples += [("hybridnb_endpoint_request_duration_seconds_bucket", {**base, "le": le},
                     n * i) for le, n in (("0.01", 5), ("0.1", 9), ("+Inf", 10))]
        store.append(samples, ts=now - 60 + i)
    return Monitor(store_path=tmp_path / "m.db")


def test_each_panel_takes_ax_and_returns_the_figure(monitor):
    from matplotlib.figure import Figure

    fig = Figure()
    axes = fig.subplots(1, len(PANELS))
    for panel, ax in zip(PANELS, axes, strict=True):
        assert panel(monitor, window="5m", ax=ax) is fig
    latency = PANELS[0](monitor, window="5m")
    assert len(latency.axes[0].lines) == 3


def test_dashboard_renders_once_and_saves(monitor, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("show() was called"))
    fig = dashboard(monitor, window="5m", live=True, save=tmp_path / "d.png")
    # Not in a Jupyter kernel: live falls back to rendering once.
    assert not isinstance(fig, LiveDashboard)
    assert len(fig.axes) == 6 and (tmp_path / "d.png").stat().st_size > 10_000
    assert plt.get_fignums() == []


def test_empty_store_says_no_data(tmp_path):
    fig = dashboard(Monitor(store_path=tmp_path / "empty.db"), window="5m")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no data yet" in texts
