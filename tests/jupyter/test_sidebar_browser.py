"""End to end: the hybridnb sidebar in a real JupyterLab, driven by headless Chromium.

JupyterLab runs on loopback with the server extension enabled and this tree's built
extension on its labextensions path; the user starts a cluster from the sidebar, opens
its dashboard (through the server's proxy), inserts the connect code into the notebook
and runs it, runs the notebook as a job and downloads its output, and stops the cluster.
Screenshots of each step land in build/test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import nbformat
import pytest

from hybridnb.testing import stop_processes, wait_until

from .test_labextension import NAME, ROOT, built_labextension

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "build" / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} is missing: apt-get install -y "
                              "--no-install-recommends chromium"),
]

# Worker processes: a threads-only LocalCluster talks inproc://, which no other process
# (the kernel that connects) can reach.
CONFIG = """
sites:
  lab:
    tier: private
    backend: local
    capacity: {cpu: 2, memory: 4GiB}
    classifications: [public, internal]
  cloud:
    tier: public
    backend: local
    capacity: {cpu: 8, memory: 32GiB}
    cost: {cpu_hour: 0.1}
    classifications: [public]
"""


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


def _notebook(path: Path, cells: list[nbformat.NotebookNode]) -> None:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def lab(hybridnb_home, monkeypatch):
    """JupyterLab with hybridnb's server extension and this tree's built sidebar."""
    extension = built_labextension()
    config = hybridnb_home / "hybridnb.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("HYBRIDNB_CONFIG", str(config))
    root = hybridnb_home / "lab"
    root.mkdir()
    _notebook(root / "analysis.ipynb", [
        nbformat.v4.new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('print("square", n * n)')])
    _notebook(root / "panel.ipynb", [nbformat.v4.new_code_cell(textwrap.dedent("""\
        import ipywidgets as w
        from hybridnb.widgets.base import CodeView
        view = CodeView()
        view.code.value = "answer = 41 + 1"
        w.VBox([view.insert, view.note])"""))])
    jdir = hybridnb_home / "jupyter"
    data = jdir / "data"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / NAME).symlink_to(extension, target_is_directory=True)
    # No "get notified about Jupyter news?" toast over the screenshots.
    news = jdir / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    (jdir / "config").mkdir()
    (jdir / "config" / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"hybridnb.jupyter": True}}}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(jdir / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(jdir / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(jdir / "runtime"), "JUPYTER_PATH": str(data),
           "JUPYTER_CONFIG_DIR": str(jdir / "config"),
           # Kernels, keepers and jobs import this tree's hybridnb.
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [
               os.environ.get("PYTHONPATH")])])}
    env.pop("HYBRIDNB_HEADLESS", None)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log_path = hybridnb_home / "jupyterlab.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(lambda: _api(base, token, "/api/status") is not None, timeout=60,
                       interval=0.3, what="JupyterLab", alive=lambda: proc.poll() is None)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"JupyterLab did not start: {exc}\n"
                               f"{log_path.read_text()[-2000:]}") from exc
        yield base, token, root
    finally:
        try:  # kernels outlive the page: end them through the sessions API
            for session in _api(base, token, "/api/sessions"):  # type: ignore[union-attr]
                _api(base, token, f"/api/sessions/{session['id']}", "DELETE")
        except OSError:
            pass
        stop_processes(proc)
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "sidebar-jupyterlab.log").write_bytes(log_path.read_bytes())


def _browser(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class _Failures:
    """On failure: a screenshot of the page and its console, as artifacts."""

    def __init__(self, page, name: str):
        self.page, self.name, self.console = page, name, []
        for old in (f"{name}-failure.png", f"{name}-console.log"):
            (ARTIFACTS / old).unlink(missing_ok=True)
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def __enter__(self) -> _Failures:
        return self

    def __exit__(self, kind, *_exc) -> None:
        if kind is not None:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / f"{self.name}-console.log").write_text("\n".join(self.console))
            try:
                self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-failure.png"))
            except Exception:  # the page may be gone; the console log still helps
                pass

    @property
    def errors(self) -> list[str]:
        return [line for line in self.console if line.startswith("error: ")]


def _open(page, base: str, token: str, notebook: str) -> None:
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    page.locator(".jp-StatusBar-TextItem",
                 has_text="Python 3 (ipykernel) | Idle").first.wait_for(timeout=90_000)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"sidebar-{name}.png"))


def _cells(page) -> list[str]:
    return page.locator(".jp-NotebookPanel:visible .jp-Cell .jp-InputArea-editor").all_inner_texts()


def test_sidebar_end_to_end(lab):
    from playwright import sync_api

    base, token, _root = lab
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900},
                                    accept_downloads=True)
            with _Failures(page, "sidebar") as watch:
                _run_end_to_end(page, base, token, name_prefix="lab-")
                ours = [e for e in watch.errors if "hybridnb" in e]
                assert not ours, ours
        finally:
            browser.close()


def _run_end_to_end(page, base: str, token: str, name_prefix: str) -> None:
    """The steps of the end-to-end test, screenshots as it goes."""
    _open(page, base, token, "analysis.ipynb")

    # The sidebar: its tab in the left area, sections filled from the server.
    page.locator(".lm-TabBar-tab[data-id='hybridnb-sidebar']").click()
    sidebar = page.locator("#hybridnb-sidebar")
    sites = sidebar.locator("[data-section='sites'] tr.hybridnb-row")
    sites.filter(has_text="cloud").wait_for(timeout=30_000)
    assert sorted(sites.evaluate_all("rows => rows.map(r => r.dataset.name)")) == [
        "cloud", "lab", "local"]

    # Start a cluster on "lab" with 2 workers; it is listed running, with them.
    clusters = sidebar.locator("[data-section='clusters']")
    form = clusters.locator("form.hybridnb-start-form")
    form.locator("select[name='site']").select_option("lab")
    form.locator("input[name='workers']").fill("-1")
    form.locator("button[type='submit']").click()
    error = form.locator("[data-field='workers'] .hybridnb-field-error")
    error.filter(has_text=re.compile("workers")).wait_for(timeout=30_000)
    form.locator("input[name='workers']").fill("2")
    form.locator("button[type='submit']").click()
    row = clusters.locator("tr.hybridnb-row").first
    row.locator(".hybridnb-badge[data-state='running']").wait_for(timeout=120_000)
    assert error.inner_text() == ""
    row.filter(has_text="2 workers").wait_for(timeout=60_000)
    name = row.get_attribute("data-name")
    assert name and name.startswith(name_prefix), name
    page.locator(".hybridnb-statusbar", has_text="1 cluster").wait_for(timeout=30_000)
    _shot(page, "1-cluster-running")

    # Its dashboard, in a main-area tab, through the server's proxy.
    row.locator("[data-action='dashboard']").click()
    tab = page.locator(".lm-TabBar-tab", has_text=f"Dask: {name}")
    tab.wait_for(timeout=30_000)
    src = page.locator(".hybridnb-dashboard iframe").get_attribute("src")
    assert src and "/hybridnb/dashboard/" in src, src
    frame = page.frame_locator(".hybridnb-dashboard iframe")
    frame.locator(".bk-Column, .bk-root, div[class^='bk']").first.wait_for(
        timeout=60_000)
    _shot(page, "2-dashboard")

    # Back to the notebook: the connect code goes in at once, and runs.
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab",
                 has_text="analysis.ipynb").click()
    page.locator(".jp-NotebookPanel:visible .jp-Cell").last.click()
    before = len(_cells(page))
    row.locator("[data-action='connect']").click()
    wait_until(lambda: len(_cells(page)) == before + 1, timeout=10, interval=0.1,
               what="the inserted cell")
    # Below the active cell, and (Shift+Enter adds one more below it) it stays there.
    inserted = page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(before)
    assert f'hybridnb.connect("{name}")' in inserted.inner_text()
    inserted.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    inserted.locator(".jp-OutputArea-output").filter(
        has_text=re.compile(re.escape(name))).first.wait_for(timeout=60_000)
    _shot(page, "3-connected")

    # Run the notebook as a job: parameters from its cell, the planner's site.
    sidebar.locator("[data-action='run-notebook']").click()
    dialog = page.locator(".jp-Dialog.hybridnb-dialog")
    param = dialog.locator("input[name='parameters.n']")
    param.wait_for(timeout=30_000)
    assert param.input_value() == "3"
    dialog.locator(".hybridnb-plan-explanation").wait_for(timeout=30_000)
    assert dialog.locator(".hybridnb-plan-choice").inner_text().startswith(
        "The planner chooses")
    param.fill("5")
    _shot(page, "4-job-dialog")
    dialog.locator(".jp-Dialog-footer button", has_text="Run job").click()
    dialog.wait_for(state="detached", timeout=60_000)
    job = sidebar.locator("[data-section='jobs'] tr.hybridnb-row").first
    job.locator(".hybridnb-badge[data-state='succeeded']").wait_for(timeout=180_000)
    assert "n=5" in job.locator(".hybridnb-job-detail").inner_text()
    _shot(page, "5-job-succeeded")  # docs/images/sidebar.png is this one, scaled down
    page.locator("#hybridnb-sidebar").screenshot(
        path=str(ARTIFACTS / "sidebar-panel.png"))
    with page.expect_download(timeout=30_000) as info:
        job.locator("[data-action='output']").click()
    executed = nbformat.read(info.value.path(), as_version=4)
    outputs = [o.get("text", "") for c in executed.cells for o in c.get("outputs", [])]
    assert any("square 25" in text for text in outputs), outputs

    # Stop the cluster, after confirming.
    row.locator("[data-action='stop']").click()
    confirm = page.locator(".jp-Dialog")
    confirm.locator(".jp-Dialog-footer button", has_text="Stop").click()
    clusters.locator(".hybridnb-empty").wait_for(timeout=60_000)
    page.locator(".hybridnb-statusbar", has_text="0 clusters").wait_for(timeout=30_000)
    _shot(page, "6-stopped")


def test_panel_insert_cell_appears_at_once(lab):
    """A panel's "Insert cell" puts the cell in the notebook without running anything;
    the launcher makes a notebook from the quickstart."""
    from playwright import sync_api

    base, token, root = lab
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            _open(page, base, token, "panel.ipynb")
            page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
            page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
            button = page.locator("button.widget-button", has_text="Insert cell")
            button.wait_for(timeout=60_000)
            page.locator(".jp-StatusBar-TextItem",
                         has_text="Python 3 (ipykernel) | Idle").first.wait_for(timeout=60_000)
            before = len(_cells(page))
            button.click()
            wait_until(lambda: len(_cells(page)) == before + 1, timeout=15, interval=0.1,
                       what="the inserted cell")
            assert _cells(page)[-1].strip() == "answer = 41 + 1"
            page.locator(".widget-html", has_text="inserted below the active cell").wait_for(
                timeout=15_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "sidebar-panel-insert.png"))

            # The launcher's quickstart: a new notebook from notebooks/00_quickstart.ipynb.
            page.locator(".lm-MenuBar-itemLabel:text-is('File')").click()
            page.locator(".lm-Menu-itemLabel:text-is('New Launcher')").click()
            page.locator(".jp-LauncherCard", has_text="hybridnb Quickstart").click()
            page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab",
                         has_text="hybridnb-quickstart.ipynb").wait_for(timeout=30_000)
            wanted = nbformat.read(ROOT / "notebooks" / "00_quickstart.ipynb", as_version=4)
            wait_until(lambda: (root / "hybridnb-quickstart.ipynb").exists(), timeout=10,
                       interval=0.2, what="the quickstart notebook")
            made = nbformat.read(root / "hybridnb-quickstart.ipynb", as_version=4)
            assert [c.source for c in made.cells] == [c.source for c in wanted.cells]
        finally:
            browser.close()
