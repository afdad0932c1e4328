"""Local deployments: router, policies, health replacement, autoscaling, canaries."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time

import httpx
import numpy as np
import pytest
import torch

from hybridnb.errors import UsageError
from hybridnb.serve.autoscale import AutoscalePolicy, Autoscaler
from hybridnb.serve.endpoint import deploy
from hybridnb.serve.model_bundle import bundle
from hybridnb.serve.router import POLICIES, ReplicaPool
from hybridnb.serve.settings import ServeSettings
from hybridnb.state import Kind, StateStore, Status

from .conftest import infer_body, make_mlp

INFER = "/v2/models/mlp/infer"


def expected(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(x)).numpy()


def wait_for(cond, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# -- pure parts ------------------------------------------------------------------------------


def test_policies_prefer_the_idle_and_fast_replica():
    pool = ReplicaPool()
    a, b, c = (pool.add(f"http://127.0.0.1:{p}") for p in (1, 2, 3))
    reps = pool.healthy()
    assert [POLICIES["round_robin"](reps, pool).url for _ in range(3)] == [
        a.url, b.url, c.url]
    a.in_flight, b.in_flight, c.in_flight = 5, 0, 5
    assert {POLICIES["least_connections"](reps, pool).url for _ in range(10)} == {b.url}
    for rep, ms in ((a, 50), (b, 1), (c, 20)):
        rep.in_flight, rep.requests, rep.ewma_s = 0, 10, ms / 1000
    assert {POLICIES["least_response_time"](reps, pool).url for _ in range(10)} == {b.url}
    d = pool.add("http://127.0.0.1:4")  # new: tried first, then not again until it answers
    assert POLICIES["least_response_time"]([*reps, d], pool) is d
    d.in_flight = 1
    assert POLICIES["least_response_time"]([*reps, d], pool) is b
    pool.remove(d)
    a.in_flight, b.in_flight, c.in_flight = 9, 9, 0
    picks = [POLICIES["power_of_two"](reps, pool).url for _ in range(60)]
    assert picks.count(c.url) > 30  # c wins whenever it is one of the two drawn
    assert pool.free_index() == 3
    pool.remove(b)
    assert pool.free_index() == 1  # slots are reused: replica labels stay bounded


def test_autoscaler_decisions():
    a = Autoscaler(AutoscalePolicy(min=1, max=4, target_in_flight=2, upscale_delay_s=1,
                                   downscale_delay_s=2))
    assert a.desired(1, 6, 0.0) == 1  # not yet: load must stay high for the delay
    assert a.desired(1, 6, 0.5) == 1
    assert a.desired(1, 6, 1.1) == 3  # sized for the load
    assert a.desired(3, 0, 2.0) == 3
    assert a.desired(3, 0, 4.1) == 2  # one step down per delay
    assert a.desired(2, 0, 4.2) == 2
    assert a.desired(2, 0, 6.2) == 1
    assert a.desired(1, 0, 9.0) == 1  # never below min
    with pytest.raises(UsageError, match="min <= max"):
        AutoscalePolicy(min=3, max=2)
    with pytest.raises(UsageError, match="unknown autoscale"):
        AutoscalePolicy.coerce({"maximum": 3})


def test_bad_arguments_are_usage_errors(mlp, hybridnb_home):
    with pytest.raises(UsageError, match="routing policy"):
        deploy(mlp[1], routing="fastest")
    with pytest.raises(UsageError, match="render"):
        deploy(mlp[1], site="edge-1")


def test_router_and_replicas_share_the_environments_token(mlp, hybridnb_home, monkeypatch):
    from hybridnb.serve.deployment import Deployment

    monkeypatch.setenv("HYBRIDNB_ENDPOINT_TOKEN", "from-env")
    assert Deployment(mlp[1].path, record=False).token == "from-env"
    assert Deployment(mlp[1].path, token="given", record=False).token == "given"


# -- real deployments ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_deploy_routes_records_and_closes(mlp, hybridnb_home):
    model, b = mlp
    store = StateStore()
    port = free_port()
    settings = ServeSettings(metrics_auth=True)
    with deploy(b, replicas=2, token="tok", store=store, port=port, settings=settings) as ep:
        assert ep.url == f"http://127.0.0.1:{port}"  # the router listens where it was told
        rec = store.get(ep.status()["record"])
        assert rec.kind is Kind.endpoint and rec.status is Status.running
        assert rec.address == ep.url and len(rec.pids) == 2 and os.getpid() not in {
            p.pid for p in rec.pids}  # gc stops replicas, never the owner
        x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
        np.testing.assert_allclose(ep.predict(x), expected(model, x), atol=1e-5)
        np.testing.assert_allclose(ep.predict(torch.as_tensor(x[0])), expected(model, x[:1]),
                                   atol=1e-5)
        with httpx.Client(base_url=ep.url) as c:
            assert c.post(INFER, json=infer_body(x)).status_code == 401
            assert c.get("/v2/health/ready").status_code == 200
            r = c.post("/v1/models/mlp:predict", json={"instances": x.tolist()},
                       headers=ep.headers)
            np.testing.assert_allclose(r.json()["predictions"], expected(model, x), atol=1e-5)
            for _ in range(8):
                assert c.post(INFER, json=infer_body(x), headers=ep.headers).status_code == 200
            assert c.get("/metrics").status_code == 401  # metrics_auth: the token too
            text = c.get("/metrics", headers=ep.headers).text
        router = ep.metrics()["router"]  # with the token, at the router and each replica
        assert all(m for m in ep.metrics()["replicas"].values())
        for i in (0, 1):  # round robin used both
            assert router[f'hybridnb_router_requests_total{{code="200",replica="{i}",'
                          'version="stable"}'] >= 4
        assert 'hybridnb_router_replicas{state="healthy",version="stable"} 2.0' in text
        st = ep.status()
        assert st["healthy"] == 2 and st["routing"] == "round_robin"
        assert "round_robin" in repr(ep) and "<table>" in ep._repr_html_()
        assert set(ep.logs()) == {"replica-0", "replica-1", "events"}
        procs = [r.process for r in ep._d.pool.replicas]
    assert all(not p.alive() for p in procs)
    assert store.get(rec.id).status is Status.stopped and "closed" in repr(ep)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


async def _hammer(url, body, *, seconds, limit, concurrency, headers=None):
    """Bounded load: at most ``limit`` requests or ``seconds``; returns (codes, bodies)."""
    results: list[tuple[int, bytes]] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30, headers=headers,
                                 limits=httpx.Limits(max_connections=concurrency)) as c:
        async def worker():
            while time.monotonic() < deadline and len(results) + len(errors) < limit:
                try:
                    r = await c.post(url, json=body)
                    results.append((r.status_code, r.content))
                except httpx.TransportError as exc:
                    errors.append(repr(exc))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, errors


@pytest.mark.slow
def test_overload_is_200_or_503_and_every_200_is_right(mlp, hybridnb_home):
    model, b = mlp
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    want = expected(model, x)
    # Small admission limits: 32 concurrent clients are several times what fits.
    settings = ServeSettings(max_in_flight=2, max_queue=2, batching=False, inline_max_ms=0)
    with deploy(b, replicas=1, settings=settings, record=False) as ep:
        results, errors = asyncio.run(_hammer(ep.url + INFER, infer_body(x), seconds=3,
                                              limit=3000, concurrency=32))
    assert not errors, errors[:3]
    codes = {code for code, _ in results}
    assert codes <= {200, 503} and 503 in codes and 200 in codes, codes
    import orjson

    for code, content in results:
        if code == 200:
            got = np.array(orjson.loads(content)["outputs"][0]["data"]).reshape(2, 3)
            np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_killed_replica_is_retried_and_replaced(mlp, hybridnb_home):
    _, b = mlp
    x = np.ones((1, 8), np.float32)
    with deploy(b, replicas=2, routing="least_connections", record=False) as ep:
        victim = ep._d.pool.replicas[0]
        old_pids = {r.process.pid for r in ep._d.pool.replicas}

        async def scenario():
            load = asyncio.ensure_future(_hammer(ep.url + INFER, infer_body(x), seconds=4,
                                                 limit=600, concurrency=4))
            await asyncio.sleep(1.0)
            os.kill(victim.process.pid, signal.SIGKILL)
            return await load

        results, errors = asyncio.run(scenario())
        failed = len(errors) + sum(code != 200 for code, _ in results)
        assert failed <= 0.01 * (len(results) + len(errors)), (failed, errors[:3])
        wait_for(lambda: ep.status()["healthy"] == 2 and {
            r.process.pid for r in ep._d.pool.replicas} - old_pids, 60, "a replacement")
        assert ep.predict(x).shape == (1, 3)
        assert ep.metrics()["router"]["hybridnb_router_retries_total"] >= 1
        assert any("replacing replica" in m for _, m in ep._d.events)


@pytest.mark.slow
def test_autoscaler_adds_and_removes_replicas(mlp, hybridnb_home):
    _, b = mlp
    x = np.ones((1, 8), np.float32)
    policy = {"min": 1, "max": 2, "target_in_flight": 0.5, "upscale_delay_s": 0.3,
              "downscale_delay_s": 1.0}
    with deploy(b, replicas=1, autoscale=policy, record=False) as ep:
        asyncio.run(_hammer(ep.url + INFER, infer_body(x), seconds=1, limit=400,
                            concurrency=8))
        load_end = time.monotonic()
        wait_for(lambda: ep.status()["wanted"]["stable"] == 2 or
                 len(ep._d.pool.replicas) == 2, 30, "scale up")
        wait_for(lambda: len(ep._d.pool.replicas) == 2 and ep.status()["healthy"] == 2, 60,
                 "the second replica")
        wait_for(lambda: len(ep._d.pool.replicas) == 1, 60, "scale down")
        assert time.monotonic() - load_end >= 1.0
        events = " ".join(m for _, m in ep._d.events)
        assert "from 1 to 2" in events and "from 2 to 1" in events


@pytest.mark.slow
def test_canary_split_promote_and_rollback(mlp, hybridnb_home, tmp_path):
    model, b = mlp
    new_model = make_mlp(seed=7)
    b2 = bundle(new_model, torch.randn(2, 8), tmp_path / "mlp-v2", name="mlp", version="2")
    x = np.ones((1, 8), np.float32)
    old, new = expected(model, x), expected(new_model, x)
    with deploy(b, replicas=1, record=False) as ep:
        ep.canary(b2, percent=25)
        assert "canary 25 %" in repr(ep)
        outs = [ep.predict(x) for _ in range(200)]
        n_new = sum(np.allclose(o, new, atol=1e-5) for o in outs)
        assert sum(np.allclose(o, old, atol=1e-5) for o in outs) + n_new == 200
        assert 25 <= n_new <= 80, n_new  # 50 expected; binomial sd ~6
        router = ep.metrics()["router"]
        assert sum(v for k, v in router.items() if k.startswith(
            "hybridnb_router_requests_total") and 'version="canary"' in k) == n_new
        ep.rollback()
        assert all(np.allclose(ep.predict(x), old, atol=1e-5) for _ in range(20))
        ep.canary(b2, percent=50).promote()
        assert ep.bundle.version == "2" and ep.status()["canary_percent"] == 0
        assert all(np.allclose(ep.predict(x), new, atol=1e-5) for _ in range(20))
        assert {r.bundle for r in ep._d.pool.replicas} == {str(b2.path.resolve())}


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [2, 3])
def test_promote_leaves_only_the_new_version(replicas, mlp, hybridnb_home, tmp_path):
    # With two or more stable replicas, every old one must go: asked one by one, each
    # replica serves version 2, and so does every answer through the router.
    _, b = mlp
    b2 = bundle(make_mlp(seed=7), torch.randn(2, 8), tmp_path / "mlp-v2", name="mlp",
                version="2")
    x = infer_body(np.ones((1, 8), np.float32))
    with deploy(b, replicas=replicas, record=False) as ep:
        old = [r.process for r in ep._d.pool.replicas]
        ep.canary(b2, percent=50).promote()
        reps = ep._d.pool.replicas
        assert len(reps) == replicas and ep.status()["wanted"] == {
            "stable": replicas, "canary": 0}
        for rep in reps:
            meta = httpx.get(rep.url + "/v2/models/mlp").json()
            assert meta["versions"] == ["2"], (rep, meta)
        with httpx.Client(base_url=ep.url) as c:
            answers = [c.post(INFER, json=x).json() for _ in range(4 * replicas)]
        assert {a["model_version"] for a in answers} == {"2"}
        assert not any(p.alive() for p in old)  # the old replicas were stopped
        router = ep.metrics()["router"]
        for rep in reps:  # round robin: each of them answered its share
            assert router[f'hybridnb_router_requests_total{{code="200",replica="{rep.index}",'
                          'version="stable"}'] >= 4
