"""Jobs outlive the Jupyter server: a new server sees them, and the queue moves on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import psutil
import pytest

from hybridnb.processes import free_port
from hybridnb.testing.waiting import wait_until

from .conftest import write_notebook

BASE = "/user/alice/"  # as JupyterHub serves a user's server
TOKEN = "test-token-restart"


def _server(tmp_path, root, name):
    """A real ``jupyter server`` process with the extension enabled, under BASE."""
    config = tmp_path / f"jupyter-{name}"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"hybridnb.jupyter": True}}}))
    port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / f"runtime-{name}"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / f"server-{name}.log", "wb")  # noqa: SIM115 (closed by the caller)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--ServerApp.base_url={BASE}", f"--IdentityProvider.token={TOKEN}",
         f"--ServerApp.root_dir={root}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}{BASE}"
    wait_until(lambda: httpx.get(f"{url}api/status", params={"token": TOKEN},
                                 timeout=2).status_code == 200,
               timeout=60, what=f"jupyter server {name}", alive=lambda: proc.poll() is None,
               ignore=(httpx.HTTPError,))
    return proc, url, log


def _stop(proc, log):
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.mark.slow
def test_jobs_survive_a_server_restart(tmp_path, hybridnb_user):
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "sq.ipynb", "n = 2\nsleep = 0.0\n",
                   "import time\ntime.sleep(sleep)\nprint(n * n)\n")
    headers = {"Authorization": f"token {TOKEN}"}
    proc, url, log = _server(tmp_path, root, "first")
    try:
        first = httpx.post(f"{url}hybridnb/jobs", headers=headers, timeout=30,
                           json={"notebook": "sq.ipynb", "parameters": {"sleep": 4}}).json()
        second = httpx.post(f"{url}hybridnb/jobs", headers=headers, timeout=30,
                            json={"notebook": "sq.ipynb", "parameters": {"n": 5}}).json()
        assert (first["status"], second["status"]) == ("running", "queued")
    finally:
        _stop(proc, log)
    from hybridnb.state import StateStore

    rec = StateStore().get(first["id"])
    assert any(p.alive() for p in rec.pids), "the job died with the server"
    assert all(p.pid != proc.pid for p in rec.pids)
    # No server runs now; the first job's end starts the second one.
    wait_until(lambda: StateStore().get(second["id"]).status.value == "succeeded",
               timeout=120, interval=0.5, what="the queued job, run with no server up")
    proc, url, log = _server(tmp_path, root, "second")
    try:
        jobs = {j["id"]: j for j in httpx.get(f"{url}hybridnb/jobs", headers=headers,
                                               timeout=30).json()["jobs"]}
        assert jobs[first["id"]]["status"] == "succeeded"
        assert jobs[second["id"]]["status"] == "succeeded"
        out = httpx.get(f"{url}hybridnb/jobs/{second['id']}/output", headers=headers,
                        timeout=30)
        assert out.status_code == 200 and "25" in out.text
    finally:
        _stop(proc, log)
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == "zombie"
