"""Preprocess, Train, Endpoint and Monitor panels, and ui(), through widget state."""

from __future__ import annotations

import re
import time

import pytest

from hybridnb.widgets import EndpointPanel, MonitorPanel, PreprocessPanel, TrainPanel, ui


def test_preprocess_runs_with_progress_and_summary(panels, hybridnb_home):
    panel = panels(PreprocessPanel)
    run = panel.buttons["run"][0]
    panel.form["steps"].widget.value = ()
    assert run.disabled and "at least one step" in panel.form["steps"].error
    panel.form["steps"].widget.value = ("split", "standard_scale")
    panel.form["out"].widget.value = str(hybridnb_home / "prepared")
    panel.click("run", timeout=240)
    assert panel.runner.last_error is None, panel.runner.last_error
    assert panel.progress.value == 100 and panel.progress.bar_style == "success"
    assert sum(panel.result.counts.values()) == 1797 and "done" in panel.status.value
    assert "standard_scale" in panel.summary.value
    assert "Pipeline([{step: {}} for step in steps]" in panel.code_view.code.value


def test_train_form_validates_and_generates_code(panels):
    panel = panels(TrainPanel)
    assert panel.buttons["stop"][0].disabled and not panel.buttons["launch"][0].disabled
    panel.form["lr"].widget.value = "0"
    assert panel.buttons["launch"][0].disabled and "must be > 0" in panel.form["lr"].error
    panel.form["lr"].widget.value = "0.01"
    panel.form["max_steps"].widget.value = "5"
    code = panel.code_view.code.value
    assert "'optimizer': {'lr': 0.01}" in code and "'max_steps': 5" in code
    assert "hybridnb.fit(spec, nprocs=nprocs, run_dir=run_dir)" in code


@pytest.mark.slow
def test_train_launch_plots_live_metrics(panels, hybridnb_home):
    panel = panels(TrainPanel, poll_interval=0.3)
    for name, value in {"model": "mlp", "epochs": "1", "max_steps": "6", "nprocs": "1",
                        "run_dir": str(hybridnb_home / "run")}.items():
        panel.form[name].widget.value = value
    panel.buttons["launch"][0].click()
    assert not panel.buttons["stop"][0].disabled  # stop is live while training runs
    panel.runner.wait(240)
    assert panel.runner.last_error is None, panel.runner.last_error
    assert "loss" in panel.latest.value and panel.plot.value[:4] == b"\x89PNG"
    assert (hybridnb_home / "run" / "bundle" / "hybridnb-model.json").is_file()


@pytest.mark.slow
def test_train_stop_ends_the_run_and_shows_why(panels, hybridnb_home):
    panel = panels(TrainPanel, poll_interval=0.3)
    for name, value in {"model": "mlp", "epochs": "500", "nprocs": "1",
                        "run_dir": str(hybridnb_home / "run")}.items():
        panel.form[name].widget.value = value
    panel.buttons["launch"][0].click()
    deadline = time.monotonic() + 120
    while "loss" not in panel.latest.value and time.monotonic() < deadline:
        time.sleep(0.2)
    panel.buttons["stop"][0].click()  # while launch still runs
    panel.runner.wait(120)
    assert panel.runner.last_error and "Traceback" not in panel.error.value
    assert not panel.buttons["launch"][0].disabled


@pytest.fixture
def tiny_bundle(hybridnb_home):
    import torch

    from hybridnb.serve.model_bundle import bundle

    torch.manual_seed(0)
    return bundle(torch.nn.Linear(4, 2), torch.zeros(1, 4), hybridnb_home / "tiny",
                  name="tiny", labels=["a", "b"])


@pytest.mark.slow
def test_endpoint_deploy_scale_test_stop(panels, tiny_bundle, hybridnb_home):
    panel = panels(EndpointPanel)
    deploy = panel.buttons["deploy"][0]
    assert deploy.disabled and "give the directory" in panel.form["bundle"].error
    panel.form["bundle"].widget.value = str(hybridnb_home)
    assert deploy.disabled and "not a model bundle" in panel.form["bundle"].error
    panel.form["bundle"].widget.value = str(tiny_bundle.path)
    panel.form["canary_percent"].widget.value = "150"
    assert deploy.disabled and "between 0 and 100" in panel.form["canary_percent"].error
    panel.form["canary_percent"].widget.value = "20"
    assert not deploy.disabled
    panel.click("deploy", timeout=240)
    assert panel.runner.last_error is None, panel.runner.last_error
    assert "1 healthy" in panel.status.value and "http://127.0.0.1" in panel.status.value
    panel.form["replicas"].widget.value = "2"
    panel.click("scale", timeout=240)
    assert panel.runner.last_error is None and panel.endpoint.status()["wanted"]
    panel.click("test")
    assert panel.latency_ms is not None and re.search(r"\d+\.\d ms", panel.details.value)
    panel.form["canary_bundle"].widget.value = str(tiny_bundle.path)
    panel.click("canary", timeout=240)
    assert panel.runner.last_error is None and "canary 20%" in panel.status.value
    assert "endpoint.canary(canary_bundle, percent=canary_percent)" in panel.code_view.code.value
    panel.click("stop")
    assert panel.endpoint is None and "stopped" in panel.status.value


def test_monitor_renders_dashboard_and_alerts(panels):
    panel = panels(MonitorPanel)
    panel.form["window"].widget.value = "soon"
    assert panel.buttons["refresh"][0].disabled and "15m" in panel.form["window"].error
    panel.form["window"].widget.value = "5m"
    panel.click("refresh", timeout=120)
    assert panel.runner.last_error is None, panel.runner.last_error
    assert panel.image.value[:4] == b"\x89PNG" and "alerts" in panel.alerts.value
    assert "mon.dashboard(prometheus, window=window)" in panel.code_view.code.value


def test_ui_has_every_panel_in_tabs(hybridnb_home, monkeypatch):
    app = ui()
    try:
        assert list(app.panels) == ["Sites", "Cluster", "Preprocess", "Train", "Endpoint",
                                    "Monitor"]
        assert app.tabs.titles == tuple(app.panels)
        monkeypatch.setenv("HYBRIDNB_HEADLESS", "1")
        assert "no cluster running" in app._repr_mimebundle_()["text/html"]
    finally:
        app.close()
