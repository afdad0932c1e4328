"""Jobs on a site's Dask cluster and on Kubernetes (rendered), and the jobs CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from .conftest import call
from .test_jobs import wait_job


@pytest.mark.slow
async def test_job_runs_as_a_task_on_a_worker_of_the_site(jp_fetch, notebooks):
    status, cluster = await call(jp_fetch, "POST", "clusters",
                                 body={"site": "lab", "name": "lab1", "workers": 1})
    assert status == 201, cluster
    status, job = await call(jp_fetch, "POST", "jobs", body={
        "notebook": "sq.ipynb", "site": "lab", "cluster": "lab1", "parameters": {"n": 4}})
    assert status == 201, job
    assert (job["mode"], job["cluster"]) == ("dask", cluster["id"])
    done = await wait_job(jp_fetch, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    resp = await jp_fetch("hybridnb", "jobs", job["id"], "output")
    executed = json.loads(resp.body)
    text = "".join("".join(o.get("text", "")) for c in executed["cells"]
                   for o in c.get("outputs", []))
    assert "square 16" in text
    # The kernel ran under a worker of the lab cluster: its parent descends from a nanny
    # the cluster's record lists (the papermill process the task started).
    from hybridnb.state import StateStore

    nannies = {p.pid for p in StateStore().get(cluster["id"]).pids}
    assert "ran on worker" in done["log_tail"]
    assert nannies

    status, job = await call(jp_fetch, "POST", "jobs", body={
        "notebook": "sq.ipynb", "site": "local", "cluster": "lab1"})
    assert status == 400 and job["field"] == "cluster" and "no workers on site" in job["error"]


@pytest.mark.slow
async def test_cancel_a_job_on_a_cluster_stops_its_papermill(jp_fetch, notebooks):
    _, cluster = await call(jp_fetch, "POST", "clusters",
                            body={"site": "lab", "name": "lab2", "workers": 1})
    _, job = await call(jp_fetch, "POST", "jobs", body={
        "notebook": "sq.ipynb", "site": "lab", "cluster": "lab2", "parameters": {"sleep": 120}})
    from hybridnb.state import StateStore

    nannies = [psutil.Process(p.pid) for p in StateStore().get(cluster["id"]).pids
               if p.alive() and "keeper" not in " ".join(psutil.Process(p.pid).cmdline())]

    def papermills():
        return [c for n in nannies for c in n.children(recursive=True)
                if "hybridnb.notebooks.job_process" in " ".join(c.cmdline())]

    deadline = time.monotonic() + 90
    while not papermills():
        assert time.monotonic() < deadline, "no papermill process on the worker"
        await asyncio.sleep(0.3)
    running = papermills()
    status, body = await call(jp_fetch, "DELETE", "jobs", job["id"])
    assert status == 202 and body["status"] == "cancelled"
    _, alive = psutil.wait_procs(running, timeout=30)
    assert not alive, "the worker's papermill process outlived the cancel"


async def test_kubernetes_site_renders_the_job(jp_fetch, notebooks, hybridnb_user,
                                              monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    config = hybridnb_user / "hybridnb.yaml"
    config.write_text(config.read_text().replace("datasets:", """  k8s:
    tier: private
    backend: kubernetes
    kubernetes: {namespace: team, image: "registry.example/hybridnb:1"}
    capacity: {cpu: 8, memory: 16GiB}
datasets:"""))
    status, job = await call(jp_fetch, "POST", "jobs", body={"notebook": "sq.ipynb",
                                                            "site": "k8s"})
    assert status == 201, job
    assert job["mode"] == "kubernetes"
    done = await wait_job(jp_fetch, job["id"], {"succeeded", "failed"})
    assert done["status"] == "failed"
    assert "rendered only" in done["error"] and "kubectl apply -f" in done["error"]
    import yaml

    with open(done["manifest"]) as fh:
        config_map, k8s_job = yaml.safe_load_all(fh.read())
    assert config_map["kind"] == "ConfigMap" and "notebook.ipynb" in config_map["data"]
    assert k8s_job["kind"] == "Job" and k8s_job["metadata"]["namespace"] == "team"
    assert k8s_job["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/hybridnb:1")


def test_jobs_cli(notebooks, hybridnb_user):
    env = {**os.environ}

    def hybridnb(*args):
        return subprocess.run([sys.executable, "-m", "hybridnb", *args],
                              capture_output=True, text=True, env=env, timeout=120)

    bad = hybridnb("jobs", "submit", str(notebooks / "sq.ipynb"), "-p", "nope", "1")
    assert bad.returncode == 2 and "not declared" in bad.stderr
    refused = hybridnb("jobs", "submit", str(notebooks / "pii.ipynb"), "--site", "cloud")
    assert refused.returncode == 2 and "residency" in refused.stderr
    out = hybridnb("jobs", "submit", str(notebooks / "sq.ipynb"), "-p", "n", "3", "--json")
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["started_from"] == "cli" and job["status"] in ("running", "queued")
    shown = hybridnb("jobs", "show", job["id"], "--follow")
    assert shown.returncode == 0 and "succeeded" in shown.stdout, shown.stdout
    listed = json.loads(hybridnb("jobs", "list", "--all", "--json").stdout)
    assert [j["id"] for j in listed] == [job["id"]]
    assert hybridnb("jobs", "cancel", "job-nope").returncode == 2
