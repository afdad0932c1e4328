"""The Cluster panel against a real LocalCluster; its code re-runs headless."""

from __future__ import annotations

import nbformat
import pytest

from hybridnb.config import load_config
from hybridnb.notebooks.runner import run_notebook
from hybridnb.state import StateStore
from hybridnb.widgets import ClusterPanel, SitesPanel


def test_start_scale_adapt_stop(panels):
    panel = panels(ClusterPanel, poll_interval=0.2)
    assert [n for n, (b, _a, _f) in panel.buttons.items() if not b.disabled] == ["start",
                                                                               "refresh"]
    panel.form["processes"].widget.value = "threads"
    panel.click("start")
    assert panel.runner.last_error is None, panel.runner.last_error
    assert "running" in panel.status.value and "1 workers" in panel.status.value
    assert panel.buttons["start"][0].disabled and not panel.buttons["stop"][0].disabled
    assert panel.workers_html.value.count("<tr>") == 2  # header + one worker
    (rec,) = StateStore().list("cluster")
    assert rec.status.value == "running"

    panel.form["n_workers"].widget.value = "2"
    panel.click("scale")
    assert "2 workers" in panel.status.value, panel.runner.last_error
    panel.form["adapt"].widget.value = True
    panel.form["adapt_minimum"].widget.value = "1"
    panel.form["adapt_maximum"].widget.value = "3"
    panel.click("adapt")
    assert panel.runner.last_error is None and panel.handle.cluster._adaptive is not None

    panel.click("stop")
    assert panel.handle is None and "stopped" in panel.status.value
    assert StateStore().list("cluster")[0].status.value == "stopped"
    assert not panel.buttons["start"][0].disabled and panel.buttons["stop"][0].disabled


def test_bad_values_disable_start_and_failures_show_in_panel(panels, hybridnb_home):
    config = load_config(overrides={"sites.dead": {
        "tier": "private", "backend": "scheduler", "capacity": {"cpu": 1, "memory": "1GiB"},
        "scheduler": {"address": "tcp://127.0.0.1:9", "timeout": 1}}})
    panel = panels(ClusterPanel, config=config)
    start = panel.buttons["start"][0]
    panel.form["n_workers"].widget.value = "two"
    assert start.disabled and "not a whole number" in panel.form["n_workers"].message.value
    panel.form["n_workers"].widget.value = "0"
    panel.form["adapt"].widget.value = True
    panel.form["adapt_maximum"].widget.value = "0"
    assert start.disabled  # max 0 is below 1
    panel.form["adapt_maximum"].widget.value = "2"
    panel.form["adapt_minimum"].widget.value = "3"
    assert start.disabled and "adapt minimum" in panel.form["adapt_maximum"].message.value
    panel.form["adapt"].widget.value = False
    panel.form["site"].widget.value = "dead"
    panel.form["processes"].widget.value = "threads"
    assert start.disabled and "local backend" in panel.form["processes"].message.value
    panel.form["processes"].widget.value = "site default"
    assert not start.disabled
    panel.click("start")
    assert "cannot reach the scheduler" in panel.runner.last_error
    assert "cannot reach the scheduler" in panel.error.value
    assert "Traceback" not in panel.error.value
    assert panel.handle is None and not start.disabled


def test_headless_display_is_static_html(panels, monkeypatch):
    monkeypatch.setenv("HYBRIDNB_HEADLESS", "1")
    panel = panels(ClusterPanel)
    bundle = panel._repr_mimebundle_()
    assert "no cluster running" in bundle["text/html"] and "n_workers" in bundle["text/html"]
    monkeypatch.setenv("HYBRIDNB_HEADLESS", "0")
    assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()


@pytest.mark.slow
def test_code_from_panels_reruns_headless(panels, hybridnb_home):
    """A notebook made only by inserting code from the panels re-runs under hybridnb run."""
    sites = panels(SitesPanel)
    sites.form["kind"].widget.value = "preprocess"
    sites.form["cpu"].widget.value = "1"
    cluster = panels(ClusterPanel)
    cluster.form["processes"].widget.value = "threads"
    cluster.form["adapt"].widget.value = True
    cluster.form["adapt_maximum"].widget.value = "2"
    # What "Insert cell" queues is exactly the copy box's text.
    cells = [sites.code_view.code.value, cluster.code_view.code.value,
             "assert plan.chosen.site == 'local'\ncluster.close()"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = hybridnb_home / "from_panels.ipynb"
    nbformat.write(nb, path)
    run = run_notebook(path, timeout=120)
    assert run.ok, run.error
    out = nbformat.read(run.output, as_version=4)
    html = out.cells[1].outputs[-1]["data"]["text/html"]
    assert "ClusterHandle" in html


@pytest.mark.slow
def test_panel_under_papermill_renders_static_summary(hybridnb_home):
    """papermill gives no frontend: the panel shows HTML, and nothing waits for a browser."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import hybridnb.widgets\nhybridnb.widgets.ClusterPanel()")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = hybridnb_home / "panel.ipynb"
    nbformat.write(nb, path)
    run = run_notebook(path, timeout=120)
    assert run.ok, run.error
    (output,) = nbformat.read(run.output, as_version=4).cells[0].outputs
    assert "no cluster running" in output["data"]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in output["data"]
