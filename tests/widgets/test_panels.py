"""Preprocess, Train, Endpoint and Monitor panels, and ui(), through widget state.

Real engines throughout: pipelines on dask, training with hybridnb.fit, endpoints with
hybridnb.deploy, the state store and the embedded collector in a temporary home.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybridnb.state import Kind, StateStore, Status
from hybridnb.testing import wait_until
from hybridnb.train.spec import load_spec
from hybridnb.widgets import (
    ClusterPanel,
    EndpointPanel,
    MonitorPanel,
    PreprocessPanel,
    TrainPanel,
    ui,
)
from hybridnb.widgets.base import PANEL_CSS, Offers
from hybridnb.widgets.train import SHIPPED_SPEC


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def offers():
    return Offers()  # each test's panels hand things to each other, not to other tests'


@pytest.fixture
def tiny_bundle(hybridnb_home):
    import torch

    from hybridnb.serve.model_bundle import bundle

    torch.manual_seed(0)
    return bundle(torch.nn.Linear(4, 2), torch.zeros(1, 4), hybridnb_home / "tiny",
                  name="tiny", labels=["a", "b"])


def test_preprocess_runs_with_progress_and_offers_its_output(panels, hybridnb_home, offers):
    panel = panels(PreprocessPanel, offers=offers)
    run = panel.buttons["run"][0]
    panel.form["steps"].widget.value = ()
    assert run.disabled and "at least one step" in panel.form["steps"].error
    panel.form["steps"].widget.value = ("split", "standard_scale")
    panel.click("run", timeout=240)
    assert panel.runner.last_error is None, panel.runner.last_error
    assert panel.progress.value == 100 and panel.progress.bar_style == "success"
    assert sum(panel.result.counts.values()) == 1797
    # Under $HYBRIDNB_HOME by default, never the working directory (the source tree).
    assert panel.result.path == hybridnb_home / "state" / "prepared" / "digits"
    assert not (Path.cwd() / "prepared").exists()
    assert re.search(r"1,797 rows \(train [\d,]+ · validation [\d,]+ · test [\d,]+\)",
                     panel.status.value)
    assert "{" not in panel.status.value  # no dict repr
    assert "standard_scale" in panel.summary.value
    assert '<td class="num">1797</td>' in panel.summary.value  # numbers right-aligned
    [(label, path)] = offers.items("data")
    assert path == str(panel.result.path) and "training rows" in label


def test_train_defaults_come_from_the_shipped_spec(panels, hybridnb_home, offers):
    shipped = load_spec(SHIPPED_SPEC)
    panel = panels(TrainPanel, offers=offers)
    v = panel.form.values
    assert (v["epochs"], v["batch_size"], v["lr"]) == (shipped.epochs, shipped.batch_size,
                                                      shipped.optimizer.lr)
    spec = load_spec(panel.spec())
    # Everything but what the form sets is the shipped spec's: schedule, optimizer, seed.
    assert spec.schedule == shipped.schedule and spec.optimizer == shipped.optimizer
    # The shipped spec trains on `data prepare`'s shards; with nothing prepared or offered
    # yet, the panel's data is the built-in dataset (its choice, not the spec's).
    assert spec.data.dataset == "digits" and spec.data.path is None
    assert spec.model_dump(exclude={"data"}) == shipped.model_dump(exclude={"data"})
    assert "digits_cnn.yaml" in panel.status.value
    assert panel.plot.layout.display == "none"  # no broken-image icon before a run
    assert panel.buttons["stop"][0].disabled and not panel.buttons["launch"][0].disabled
    panel.form["lr"].widget.value = "0"
    assert panel.buttons["launch"][0].disabled and "must be > 0" in panel.form["lr"].error
    panel.form["lr"].widget.value = "0.01"
    panel.form["max_steps"].widget.value = "5"
    code = panel.code_view.code.value
    assert "'lr': 0.01" in code and "'max_steps': 5" in code and "'epochs': 20" in code
    assert "hybridnb.fit(spec, nprocs=nprocs, run_dir=run_dir)" in code
    assert "run_dir = None" in code  # a new directory under $HYBRIDNB_HOME/runs


def test_train_data_choices(panels, hybridnb_home, offers):
    panel = panels(TrainPanel, offers=offers)
    data = panel.form["data"].widget
    assert [v for _, v in data.options] == ["digits", ""]
    data.value = ""
    assert panel.buttons["launch"][0].disabled
    assert "prepared dataset" in panel.form["data_path"].error
    panel.form["data_path"].widget.value = str(hybridnb_home)
    assert "no manifest.json" in panel.form["data_path"].error
    # What the Preprocess panel offers shows up, chosen, in a panel made before it.
    prepared = hybridnb_home / "prepared-elsewhere"
    prepared.mkdir()
    (prepared / "manifest.json").write_text('{"counts": {"train": 10}}')
    offers.offer("data", str(prepared), "digits prepared 12:00:00, 10 training rows")
    assert data.value == str(prepared) and panel.form.valid
    assert panel.spec()["data"]["path"] == str(prepared)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_panels_work_together(panels, hybridnb_home, offers):
    """Preprocess → Train data, Train's bundle → Endpoint, with progress on the way."""
    pre = panels(PreprocessPanel, offers=offers)
    train = panels(TrainPanel, offers=offers, poll_interval=0.2)
    endpoint = panels(EndpointPanel, offers=offers)
    assert endpoint.buttons["deploy"][0].disabled  # nothing trained yet
    pre.click("run", timeout=240)
    assert train.form["data"].widget.value == str(pre.result.path)
    train.form["epochs"].widget.value = "2"
    train.form["nprocs"].widget.value = "1"
    statuses: list[str] = []
    train.status.observe(lambda change: statuses.append(change["new"]), names="value")
    train.click("launch", timeout=600)
    assert train.runner.last_error is None, train.runner.last_error
    seen = _text(" ".join(statuses))
    assert "starting 1 rank(s)" in seen
    assert re.search(r"training: epoch [12]/2 · step \d+/\d+ · loss \d\.\d{4}", seen), seen
    assert train.progress.value == train.progress.max and train.plot.layout.display is None
    assert train.plot.value[:4] == b"\x89PNG"
    assert "TrainResult(" not in train.status.value + train.results.value
    assert "<th>result</th>" in train.results.value and "test accuracy" in train.results.value
    # The run went under $HYBRIDNB_HOME/runs, not into the working directory.
    assert train.run_dir.parent == hybridnb_home / "state" / "runs"
    assert not (Path.cwd() / "runs").exists()
    bundle = str(train.result.bundle)
    assert endpoint.form["bundle"].widget.value == bundle
    assert not endpoint.buttons["deploy"][0].disabled
    endpoint.click("deploy", timeout=240)
    assert endpoint.runner.last_error is None, endpoint.runner.last_error
    assert "<th>replica</th>" in endpoint.details.value and "{" not in endpoint.details.value
    endpoint.click("test")
    assert re.search(r"\d+\.\d ms", endpoint.test_html.value)
    endpoint.click("stop")
    assert endpoint.endpoint is None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_with_the_defaults_reaches_the_spec_accuracy(panels, hybridnb_home, offers):
    panel = panels(TrainPanel, offers=offers, poll_interval=1.0)
    panel.click("launch", timeout=800)
    assert panel.runner.last_error is None, panel.runner.last_error
    # The shipped spec promises at least 97 % on the digits (its header comment).
    assert panel.result.accuracy >= 0.97, panel.result.result


@pytest.mark.slow
def test_train_stop_ends_the_run_and_shows_why(panels, hybridnb_home, offers):
    panel = panels(TrainPanel, offers=offers, poll_interval=0.3)
    for name, value in {"model": "mlp", "epochs": "500", "nprocs": "1"}.items():
        panel.form[name].widget.value = value
    panel.buttons["launch"][0].click()
    assert not panel.buttons["stop"][0].disabled  # stop is live while training runs
    wait_until(lambda: "training: epoch" in panel.status.value, timeout=120,
               what="the first logged step")
    panel.buttons["stop"][0].click()  # while launch still runs
    panel.runner.wait(120)
    assert panel.runner.last_error and "Traceback" not in panel.error.value
    assert not panel.buttons["launch"][0].disabled
    assert panel.progress.bar_style == "danger"


@pytest.mark.slow
def test_endpoint_deploy_scale_test_stop(panels, tiny_bundle, hybridnb_home, offers):
    panel = panels(EndpointPanel, offers=offers)
    deploy = panel.buttons["deploy"][0]
    assert panel.form["bundle"].widget.value == ""  # nothing offered: other path
    assert deploy.disabled and "choose a trained bundle" in panel.form["bundle_path"].error
    panel.form["bundle_path"].widget.value = str(hybridnb_home)
    assert deploy.disabled and "not a model bundle" in panel.form["bundle_path"].error
    panel.form["bundle_path"].widget.value = str(tiny_bundle.path)
    panel.form["canary_percent"].widget.value = "150"
    assert deploy.disabled and "between 0 and 100" in panel.form["canary_percent"].error
    panel.form["canary_percent"].widget.value = "20"
    assert not deploy.disabled
    panel.click("deploy", timeout=240)
    assert panel.runner.last_error is None, panel.runner.last_error
    assert "1 of 1 replicas healthy" in panel.status.value
    assert "http://127.0.0.1" in panel.status.value
    panel.form["replicas"].widget.value = "2"
    panel.click("scale", timeout=240)
    assert panel.runner.last_error is None
    assert panel.details.value.count("<tr>") == 3  # header + two replicas
    panel.click("test")
    assert panel.latency_ms is not None and "<th>top class</th>" in panel.test_html.value
    panel.form["canary_bundle"].widget.value = str(tiny_bundle.path)
    panel.click("canary", timeout=240)
    assert panel.runner.last_error is None and "canary 20 %" in panel.status.value
    assert "endpoint.canary(canary_bundle, percent=canary_percent)" in panel.code_view.code.value
    panel.click("stop")
    assert panel.endpoint is None and "stopped" in panel.status.value


def test_endpoint_offers_the_bundles_of_finished_runs(panels, tiny_bundle, hybridnb_home,
                                                      offers):
    """A run trained elsewhere (the CLI, another kernel) is in the state store."""
    store = StateStore()
    rec = store.add(Kind.run, "digits-cnn", site="local", status=Status.running,
                    spec={"run_dir": str(hybridnb_home / "run")})
    store.update(rec.id, status=Status.succeeded, spec={
        **rec.spec, "bundle": str(tiny_bundle.path), "result": {"test_accuracy": 0.981}})
    panel = panels(EndpointPanel, offers=offers)
    [(label, path), other] = panel.form["bundle"].widget.options
    assert path == str(tiny_bundle.path) and "test accuracy 98.1 %" in label
    assert panel.form["bundle"].widget.value == path and panel.form.valid
    assert other[1] == ""


@pytest.mark.slow
def test_cluster_and_monitor_panels_show_what_started_elsewhere(panels, hybridnb_home,
                                                                offers):
    code = ("import hybridnb, sys, time\n"
            "c = hybridnb.cluster('local', n_workers=1, processes=False, name='elsewhere')\n"
            "print('ready', flush=True)\nsys.stdin.read()\nc.close()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        cluster = panels(ClusterPanel, offers=offers)
        text = _text(cluster.running_html.value)
        assert "cluster elsewhere local running dashboard" in text
        monitor = panels(MonitorPanel, offers=offers, collect_interval=0.3)
        assert "elsewhere" in _text(monitor.running.value)
        assert monitor.image.layout.display == "none"  # nothing drawn yet: no broken icon
        monitor.click("collect")
        wait_until(lambda: monitor.collector.rounds >= 3, timeout=30, what="three rounds")
        monitor.form["window"].widget.value = "5m"
        monitor.click("refresh", timeout=120)
        assert monitor.runner.last_error is None, monitor.runner.last_error
        targets = _text(monitor.targets.value)
        assert "hybridnb-dask elsewhere" in targets and " up" in targets
        assert monitor.image.layout.display is None and monitor.image.value[:4] == b"\x89PNG"
        assert "alerts" in monitor.alerts.value
        monitor.click("stop_collector")
        assert monitor.collector is None
    finally:
        proc.stdin.close()
        proc.wait(60)
        proc.stdout.close()
    cluster.click("refresh")
    assert "nothing running" in cluster.running_html.value


def test_monitor_renders_dashboard_and_alerts(panels, offers):
    panel = panels(MonitorPanel, offers=offers)
    panel.form["window"].widget.value = "soon"
    assert panel.buttons["refresh"][0].disabled and "15m" in panel.form["window"].error
    panel.form["window"].widget.value = "5m"
    panel.click("refresh", timeout=120)
    assert panel.runner.last_error is None, panel.runner.last_error
    assert panel.image.value[:4] == b"\x89PNG" and "no alerts" in panel.alerts.value
    assert "start the collector" in panel.targets.value
    assert "mon.dashboard(prometheus, window=window)" in panel.code_view.code.value


def test_panels_style_tables_and_disabled_buttons(panels, offers):
    panel = panels(EndpointPanel, offers=offers)
    assert "hybridnb-panel" in panel.root._dom_classes
    assert ":disabled" in PANEL_CSS and "grayscale" in PANEL_CSS
    assert PANEL_CSS in panel.root.children[0].value


def test_ui_has_every_panel_in_tabs(hybridnb_home, monkeypatch):
    app = ui(offers=Offers())
    try:
        assert list(app.panels) == ["Sites", "Cluster", "Preprocess", "Train", "Endpoint",
                                    "Monitor"]
        assert app.tabs.titles == tuple(app.panels)
        assert len({id(p.offers) for p in app.panels.values()}) == 1
        monkeypatch.setenv("HYBRIDNB_HEADLESS", "1")
        assert "no cluster running" in app._repr_mimebundle_()["text/html"]
    finally:
        app.close()


def test_train_panel_never_writes_into_the_working_directory(panels, hybridnb_home, offers):
    panel = panels(TrainPanel, offers=offers)
    assert panel._new_run_dir().parent == hybridnb_home / "state" / "runs"
    assert time.strftime("%Y%m%d") in panel._new_run_dir().name
