"""End to end: JupyterLab on loopback, headless Chromium, the Cluster panel's buttons."""

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


@pytest.fixture
def jupyterlab(hybridnb_home):
    """A JupyterLab server on 127.0.0.1 over a temp root holding the panel notebook."""
    root = hybridnb_home / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import hybridnb.widgets\n"
        "panel = hybridnb.widgets.ClusterPanel()\npanel.form['processes'].widget.value = "
        "'threads'\npanel")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nbformat.write(nb, root / "panel.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    jdir = hybridnb_home / "jupyter"
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
