"""Runs, endpoints, alerts and metrics through the REST routes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import psutil
import pytest

from .conftest import call


async def test_run_metrics_and_stop(jp_fetch, hybridnb_user, tmp_path):
    from hybridnb.state import Kind, StateStore, Status

    # A run as the launcher records it: its agent's pid, and rank 0's metrics lines.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = [{"kind": "step", "step": 10, "loss": 0.9, "lr": 0.1, "step_seconds": 0.05,
              "samples_per_second": 640.0},
             {"kind": "epoch", "step": 10, "epoch": 1, "val_accuracy": 0.81},
             {"kind": "step", "step": 20, "loss": 0.4, "lr": 0.1, "step_seconds": 0.04,
              "samples_per_second": 800.0}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                             start_new_session=True)
    try:
        rec = StateStore().add(Kind.run, "digits", "local", backend="local",
                               pids=[agent.pid], status=Status.running,
                               spec={"run_dir": str(run_dir)})
        status, body = await call(jp_fetch, "GET", "runs")
        assert status == 200
        (run,) = body["runs"]
        assert run["metrics"] == {"loss": 0.4, "lr": 0.1, "step_seconds": 0.04,
                                  "samples_per_second": 800.0, "accuracy": 0.81,
                                  "step": 20.0, "epoch": 1.0}
        status, body = await call(jp_fetch, "DELETE", "runs", rec.id)
        assert status == 202 and body["status"] == "stopped"
        assert agent.wait(timeout=10) is not None
        status, body = await call(jp_fetch, "DELETE", "runs", "run-nope")
        assert status == 404 and body["field"] == "id"
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()


@pytest.fixture
def bundles(tmp_path):
    import torch

    from hybridnb.serve.model_bundle import bundle

    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 3)).eval()
        out.append(bundle(model, torch.randn(2, 8), tmp_path / f"mlp{seed}", name="mlp",
                          labels=["a", "b", "c"]))
    return out


async def _until(predicate, what, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not (value := await predicate()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.3)
    return value


@pytest.mark.slow
async def test_endpoint_listed_scaled_canaried_stopped(jp_fetch, hybridnb_user, bundles):
    import torch

    from hybridnb.serve.endpoint import deploy

    # The endpoint's owner is this process (as a kernel would be), in threads of its own.
    ep = await asyncio.to_thread(deploy, bundles[0], replicas=1)
    try:
        for _ in range(20):
            await asyncio.to_thread(ep.predict, torch.randn(4, 8))
        status, body = await call(jp_fetch, "GET", "endpoints")
        (listed,) = body["endpoints"]
        assert (listed["replicas"], listed["versions"], listed["url"]) == (1, ["mlp0"], ep.url)
        assert listed["controllable"] and listed["p50_ms"] > 0
        assert listed["p99_ms"] >= listed["p50_ms"] and listed["requests"] >= 20

        status, body = await call(jp_fetch, "PATCH", "endpoints", listed["id"],
                                  body={"canary_percent": 50})
        assert status == 409 and body["field"] == "canary_percent"
        status, body = await call(jp_fetch, "PATCH", "endpoints", listed["id"],
                                  body={"replicas": 0})
        assert status == 400 and body["field"] == "replicas"
        status, body = await call(jp_fetch, "PATCH", "endpoints", listed["id"],
                                  body={"replicas": 2})
        assert status == 202

        async def two():
            _, b = await call(jp_fetch, "GET", "endpoints")
            e = b["endpoints"][0]
            return e if e["replicas"] == 2 and (e["applied"] or {}).get("replicas") == 2 else None

        await _until(two, "the owner never scaled to 2 replicas")
        assert len(ep._d.pool.replicas) == 2

        await asyncio.to_thread(ep.canary, bundles[1], 10)
        status, body = await call(jp_fetch, "PATCH", "endpoints", listed["id"],
                                  body={"canary_percent": 40})
        assert status == 202

        async def forty():
            _, b = await call(jp_fetch, "GET", "endpoints")
            e = b["endpoints"][0]
            return e if e["canary_percent"] == 40 else None

        canaried = await _until(forty, "the owner never moved the canary to 40 %")
        assert canaried["versions"] == ["mlp0", "mlp1"] and ep._d.pool.canary_percent == 40

        pids = [r.process.pid for r in ep._d.pool.replicas]
        status, body = await call(jp_fetch, "DELETE", "endpoints", listed["id"])
        assert status == 202 and body["status"] == "stopped"
        for pid in pids:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        await asyncio.sleep(1.5)  # the owner's health loop: it must not bring them back
        assert ep._d.pool.replicas == []
    finally:
        await asyncio.to_thread(ep.close)
    assert not [t for t in threading.enumerate() if t.name.startswith("hybridnb-router")]


async def test_alerts_and_metrics(jp_fetch, hybridnb_user):
    from hybridnb.monitor.store import SampleStore

    store = SampleStore()
    now = time.time()
    for i in range(12):  # a target down for the last three minutes
        store.append([("up", {"job": "hybridnb-endpoint", "instance": "127.0.0.1:9"}, 0.0),
                      ("up", {"job": "hybridnb-dask", "instance": "127.0.0.1:8"}, 1.0)],
                     ts=now - 180 + i * 15)
    store.close()
    status, body = await call(jp_fetch, "GET", "alerts")
    assert status == 200
    states = {a["name"]: a for a in body["alerts"]}
    assert states["TargetDown"]["state"] == "firing", states["TargetDown"]
    assert states["TargetDown"]["labels"]["instance"] == "127.0.0.1:9"
    assert states["EndpointLatencyHigh"]["state"] == "inactive"
    _, summary = await call(jp_fetch, "GET", "summary")
    assert summary["alerts_firing"] == 1

    status, body = await call(jp_fetch, "GET", "metrics",
                              params={"query": "up", "start": str(now - 300), "end": str(now)})
    assert status == 200
    by_job = {s["labels"]["job"]: s for s in body["series"]}
    assert set(by_job) == {"hybridnb-endpoint", "hybridnb-dask"}
    assert by_job["hybridnb-dask"]["name"] == "up"
    assert len(by_job["hybridnb-dask"]["points"]) == 12
    assert {v for _, v in by_job["hybridnb-endpoint"]["points"]} == {0.0}
    for params, field in (({}, "query"), ({"query": "up{"}, "query"),
                          ({"query": "up", "start": "soon"}, "start"),
                          ({"query": "up", "start": str(now), "end": str(now - 5)}, "start"),
                          ({"query": "up", "step": "0"}, "step")):
        status, body = await call(jp_fetch, "GET", "metrics", params=params)
        assert status == 400 and body["field"] == field, (params, body)
