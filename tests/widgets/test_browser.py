"""End to end: JupyterLab on loopback, headless Chromium: the Cluster panel's buttons, and
the Preprocess, Train and Endpoint panels working together. Screenshots go to
``build/test-artifacts``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import nbformat
import pytest

from hybridnb.testing import stop_processes, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} is missing: apt-get install -y "
                              "--no-install-recommends chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(base: str, token: str, path: str, method: str = "GET") -> object:
    req = urllib.request.Request(f"{base}{path}", method=method,
                                 headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


NOTEBOOKS = {
    "panel.ipynb": ["import hybridnb.widgets\n"
                    "panel = hybridnb.widgets.ClusterPanel()\n"
                    "panel.form['processes'].widget.value = 'threads'\npanel"],
    "together.ipynb": [
        "import hybridnb.widgets as hw\npre = hw.PreprocessPanel()\npre",
        # Short training: the browser test is about the panels, not the accuracy.
        "train = hw.TrainPanel(poll_interval=0.5)\ntrain.form['epochs'].widget.value = '2'\n"
        "train.form['nprocs'].widget.value = '1'\ntrain",
        "endpoint = hw.EndpointPanel()\nendpoint"],
}


@pytest.fixture
def jupyterlab(hybridnb_home):
    """A JupyterLab server on 127.0.0.1 over a temp root holding the panel notebooks."""
    root = hybridnb_home / "lab"
    root.mkdir()
    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                     "display_name": "Python 3 (ipykernel)"}
        nbformat.write(nb, root / name)
    port, token = _free_port(), secrets.token_hex(16)
    jdir = hybridnb_home / "jupyter"
    # No "get Jupyter news?" toast over the panels in the screenshots.
    news = jdir / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(jdir / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(jdir / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(jdir / "runtime")}
    env.pop("HYBRIDNB_HEADLESS", None)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(hybridnb_home / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(lambda: _api(base, token, "/api/status") is not None, timeout=60,
                       interval=0.3, what="JupyterLab", alive=lambda: proc.poll() is None)
        except (TimeoutError, RuntimeError) as exc:
            tail = (hybridnb_home / "jupyterlab.log").read_text()[-2000:]
            raise RuntimeError(f"JupyterLab did not start: {exc}\n{tail}") from exc
        yield base, token
    finally:
        try:  # kernels outlive the page: end them through the sessions API
            for session in _api(base, token, "/api/sessions"):  # type: ignore[union-attr]
                _api(base, token, f"/api/sessions/{session['id']}", "DELETE")
        except OSError:
            pass
        stop_processes(proc)
        log.close()


def test_cluster_panel_in_jupyterlab(jupyterlab):
    from playwright import sync_api

    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if shutil.which(CHROMIUM) is None:  # pragma: no cover - covered by the skipif
        pytest.skip("no chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/panel.ipynb?token={token}")
            status = page.locator(".jp-StatusBar-TextItem", has_text="Python 3 (ipykernel) | Idle")
            status.first.wait_for(timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
            page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
            panel = page.locator(".jupyter-widgets").filter(has_text="Cluster").first
            start = page.locator("button.widget-button:text-is('Start')")
            start.wait_for(timeout=60_000)
            status.first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "cluster-panel-0-loaded.png"))
            start.click()
            page.locator(".hybridnb-status", has_text="running").wait_for(timeout=60_000)
            assert "1 workers" in page.locator(".hybridnb-status").inner_text()
            page.screenshot(path=str(ARTIFACTS / "cluster-panel-1-running.png"))
            stop = page.locator("button.widget-button:text-is('Stop')")
            stop.click()
            page.locator(".hybridnb-status:text-is('stopped')").wait_for(timeout=60_000)
            assert panel.is_visible()
            page.screenshot(path=str(ARTIFACTS / "cluster-panel-2-stopped.png"))
        finally:
            browser.close()


def _open_and_run(page, base: str, token: str, notebook: str):
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    idle = page.locator(".jp-StatusBar-TextItem", has_text="Python 3 (ipykernel) | Idle")
    idle.first.wait_for(timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
    page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
    return idle


def _selected(select) -> str:
    # ipywidgets writes the options' spaces as no-break spaces.
    return select.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")


def test_panels_work_together_in_jupyterlab(jupyterlab):
    """Preprocess → the Train panel's data; Train → the bundle the Endpoint panel offers."""
    from playwright import sync_api

    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1900})
            idle = _open_and_run(page, base, token, "together.ipynb")
            page.locator("button.widget-button:text-is('Deploy')").wait_for(timeout=60_000)
            idle.first.wait_for(timeout=60_000)
            pre, train, endpoint = (page.locator(".jp-Cell-outputArea").nth(i)
                                    for i in range(3))
            # Nothing offered yet: the Endpoint panel cannot deploy; no broken image.
            deploy = endpoint.locator("button.widget-button:text-is('Deploy')")
            assert deploy.is_disabled()
            assert train.locator("img").count() == 0 or not train.locator("img").is_visible()
            train.screenshot(path=str(ARTIFACTS / "together-0-train-loaded.png"))
            endpoint.screenshot(path=str(ARTIFACTS / "together-0-endpoint-loaded.png"))

            pre.locator("button.widget-button:text-is('Run')").click()
            pre.locator(".hybridnb-status", has_text="1,797 rows").wait_for(timeout=120_000)
            pre.screenshot(path=str(ARTIFACTS / "together-1-preprocess-done.png"))
            data = train.locator("select").first
            assert _selected(data).startswith("digits prepared"), _selected(data)

            train.locator("button.widget-button:text-is('Launch')").click()
            train.locator(".hybridnb-status", has_text="training: epoch").wait_for(
                timeout=120_000)
            train.screenshot(path=str(ARTIFACTS / "together-2-train-running.png"))
            train.locator(".hybridnb-status", has_text="done:").wait_for(timeout=300_000)
            assert train.locator("img").is_visible()
            assert "TrainResult(" not in train.inner_text()
            train.screenshot(path=str(ARTIFACTS / "together-3-train-done.png"))

            bundle = endpoint.locator("select").first
            assert _selected(bundle).startswith("digits-cnn (trained"), _selected(bundle)
            assert deploy.is_enabled()
            endpoint.screenshot(path=str(ARTIFACTS / "together-4-endpoint-offered.png"))
            deploy.click()
            endpoint.locator(".hybridnb-status", has_text="running:").wait_for(
                timeout=120_000)
            endpoint.locator("button.widget-button:text-is('Test request')").click()
            endpoint.locator("table", has_text="test request").wait_for(timeout=60_000)
            endpoint.screenshot(path=str(ARTIFACTS / "together-5-endpoint-deployed.png"))
            endpoint.locator("button.widget-button:text-is('Stop')").click()
            endpoint.locator(".hybridnb-status:text-is('stopped')").wait_for(timeout=60_000)
        finally:
            browser.close()
