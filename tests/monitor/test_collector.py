"""The embedded collector against real loopback HTTP servers and a real state store."""

from __future__ import annotations

import json
import time

import pytest

from hybridnb.errors import OperationError, UsageError
from hybridnb.monitor import Collector, Monitor
from hybridnb.state import Kind, StateStore, Status

from .conftest import EXPOSITION


def test_scrapes_a_target_and_queries_rates(hybridnb_home, metrics_server, tmp_path):
    srv = metrics_server(EXPOSITION.format(ok=0, err=0))
    path = tmp_path / "m.db"
    with Collector(interval=60, store_path=path, discover=False) as c:
        c.add_target(srv.url, job="hybridnb-endpoint", name="mlp")
        t0 = time.time()
        for i in range(1, 5):
            srv.body = EXPOSITION.format(ok=100 * i, err=5 * i)
            summary = c.collect_once(now=t0 + 10 * i)
        assert summary["up"] == 1 and summary["down"] == []
    mon = Monitor(store_path=path)
    up = mon.query("up", {"job": "hybridnb-endpoint"}, window="2m", end=t0 + 40)
    assert set(up["value"]) == {1.0} and set(up["name"]) == {"mlp"}
    rate = mon.rate("hybridnb_endpoint_requests_total", by=["code"], over="30s",
                    window="1m", end=t0 + 40)
    last = rate.sort_values("time").groupby("code").tail(1).set_index("code")["value"]
    assert last["200"] == pytest.approx(10.0) and last["500"] == pytest.approx(0.5)
    host = mon.query("hybridnb_host_memory_total_bytes", window="2m", end=t0 + 40)
    assert (host["value"] > 0).all()


def test_unreachable_targets_are_down_and_never_hang(hybridnb_home, metrics_server,
                                                     closed_port, tmp_path):
    slow = metrics_server("", delay=30)  # accepts, then never answers in time
    with Collector(interval=60, timeout=0.5, store_path=tmp_path / "m.db",
                   discover=False) as c:
        c.add_target(f"http://127.0.0.1:{closed_port}/metrics", job="x")
        c.add_target(slow.url, job="y")
        start = time.monotonic()
        summary = c.collect_once()
        assert time.monotonic() - start < 5
    assert sorted(summary["down"]) == sorted([f"127.0.0.1:{closed_port}",
                                              f"127.0.0.1:{slow.port}"])
    health = {h["job"]: h for h in c.health()}
    assert not health["x"]["up"] and "Connection" in health["x"]["error"]
    assert "timed out" in health["y"]["error"]
    up = Monitor(store_path=tmp_path / "m.db").query("up == 0", window="1m")
    assert set(up["job"]) == {"x", "y"}


def test_discovers_endpoints_and_runs_from_the_state_store(hybridnb_home, metrics_server,
                                                           tmp_path):
    srv = metrics_server(EXPOSITION.format(ok=1, err=0))
    state = StateStore()
    ep = state.add(Kind.endpoint, "mlp", site="local", address=srv.url)
    state.update(ep.id, status=Status.running)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    now = time.time()
    lines = [{"kind": "step", "step": s, "loss": 2.0 / s, "lr": 0.1, "time": now - 10 + s}
             for s in (1, 2, 3)] + [{"kind": "epoch", "step": 3, "val_accuracy": 0.8}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines)
                                           + '{"kind": "st')  # a partial line waits
    state.add(Kind.run, "demo", site="local", status=Status.running,
              spec={"run_dir": str(run_dir)})
    stopped = state.add(Kind.endpoint, "old", site="local", address="http://127.0.0.1:1")
    state.update(stopped.id, status=Status.stopped)
    with Collector(interval=60, store_path=tmp_path / "m.db", host=False) as c:
        summary = c.collect_once(now=now)
    assert summary["up"] == 2, c.health()
    mon = Monitor(store_path=tmp_path / "m.db")
    loss = mon.query("hybridnb_train_loss", window="1m", end=now)
    assert loss["value"].tolist() == [pytest.approx(2.0 / 3)]
    assert set(loss["run"]) == {"demo"} and set(loss["job"]) == {"hybridnb-train"}
    step = mon.query("hybridnb_train_step", window="1m", end=now)["value"].tolist()
    assert step == [3.0]
    jobs = {h["job"] for h in c.health()}
    assert jobs == {"hybridnb-endpoint", "hybridnb-train"}


def test_background_thread_collects_and_stops(hybridnb_home, metrics_server, tmp_path):
    import threading

    srv = metrics_server(EXPOSITION.format(ok=1, err=0))
    c = Collector(interval=0.1, store_path=tmp_path / "m.db", discover=False, host=False)
    c.add_target(srv.url)
    with c:
        deadline = time.monotonic() + 10
        while c.rounds < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert c.rounds >= 3 and not c.running
    names = {t.name for t in threading.enumerate()}
    assert not any(n.startswith(("hybridnb-collector", "hybridnb-scrape")) for n in names)
    assert "<table>" in c._repr_html_()


def test_bad_backend_and_unreachable_prometheus(closed_port):
    with pytest.raises(UsageError, match="did you mean 'prometheus'"):
        Monitor("promethus", "http://127.0.0.1:1")
    url = f"http://127.0.0.1:{closed_port}"
    mon = Monitor("prometheus", url, timeout=2)
    start = time.monotonic()
    with pytest.raises(OperationError, match=f"cannot reach Prometheus at {url}"):
        mon.query("up")
    assert time.monotonic() - start < 5
