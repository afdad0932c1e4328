"""The embedded collector against real loopback HTTP servers and a real state store."""

from __future__ import annotations

import json
import math
import time
import urllib.parse

import pytest

from hybridnb.errors import OperationError, UsageError
from hybridnb.monitor import Collector, Monitor
from hybridnb.state import Kind, StateStore, Status
from hybridnb.testing import wait_until

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
    # Each logged step at the time it was logged, then the latest value at the scrape.
    assert loss["value"].tolist() == pytest.approx([2.0, 1.0, 2.0 / 3, 2.0 / 3])
    assert [t.timestamp() for t in loss["time"]] == pytest.approx(
        [now - 9, now - 8, now - 7, now])
    assert set(loss["run"]) == {"demo"} and set(loss["job"]) == {"hybridnb-train"}
    step = mon.query("hybridnb_train_step", window="1m", end=now)["value"].tolist()
    assert step == [1.0, 2.0, 3.0, 3.0]
    jobs = {h["job"] for h in c.health()}
    assert jobs == {"hybridnb-endpoint", "hybridnb-train"}


def test_background_thread_collects_and_stops(hybridnb_home, metrics_server, tmp_path):
    import threading

    srv = metrics_server(EXPOSITION.format(ok=1, err=0))
    c = Collector(interval=0.1, store_path=tmp_path / "m.db", discover=False, host=False)
    c.add_target(srv.url)
    with c:
        wait_until(lambda: c.rounds >= 3, timeout=10, interval=0.05, what="three rounds")
    assert not c.running
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


def test_keeps_connections_alive_and_survives_a_server_hangup(metrics_server, tmp_path):
    srv = metrics_server(EXPOSITION.format(ok=1, err=0), keepalive=True)
    with Collector(interval=60, store_path=tmp_path / "m.db", discover=False,
                   host=False) as c:
        c.add_target(srv.url, job="x")
        for _ in range(3):
            assert c.collect_once()["up"] == 1
        assert srv.connections == 1
        # The server closes idle connections silently: the next scrape finds its kept
        # connection dead, and must reconnect rather than report the target down.
        srv.hangup = True
        for _ in range(3):
            assert c.collect_once()["down"] == [], c.health()
        assert srv.connections >= 3


def test_a_target_that_speaks_no_prometheus_is_down_with_the_line(metrics_server, tmp_path):
    srv = metrics_server("<html>not metrics</html>\n")
    with Collector(interval=60, store_path=tmp_path / "m.db", discover=False,
                   host=False) as c:
        c.add_target(srv.url, job="x")
        assert c.collect_once()["down"] == [f"127.0.0.1:{srv.port}"]
    [health] = c.health()
    assert "ExpositionError: line 1:" in health["error"] and "<html>" in health["error"]


def test_discovers_dask_workers_and_follows_them(hybridnb_home, tmp_path):
    from distributed import LocalCluster

    from hybridnb.monitor import file_sd
    from hybridnb.monitor.targets import discover

    state = StateStore()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      protocol="tcp://", host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0") as cluster:
        state.add(Kind.cluster, "etl", site="local", status=Status.running,
                  spec={"dashboard": cluster.dashboard_link})
        workers = {f"127.0.0.1:{w['services']['dashboard']}"
                   for w in cluster.scheduler_info["workers"].values()}
        assert len(workers) == 2
        # A long rediscovery period: only a worker going away may trigger one early.
        with Collector(interval=60, rediscover=3600, store_path=tmp_path / "m.db",
                       host=False) as c:
            c.collect_once()
            jobs = sorted((h["job"], h["instance"], h["up"]) for h in c.health())
            scheduler = urllib.parse.urlsplit(cluster.dashboard_link).netloc
            assert jobs == [("hybridnb-dask", scheduler, True),
                            *sorted(("hybridnb-dask-worker", w, True) for w in workers)]
            sd = {t["targets"][0]: t["labels"] for t in file_sd(discover(state))}
            assert sd.keys() == workers | {scheduler}
            assert {sd[w]["job"] for w in workers} == {"hybridnb-dask-worker"}
            assert {sd[w]["name"] for w in workers} == {"etl"}

            cluster.scale(1)
            wait_until(lambda: len(cluster.scheduler_info["workers"]) == 1, timeout=30,
                       what="the cluster scaled down to one worker")

            def one_worker_left() -> bool:
                c.collect_once()
                return [h["up"] for h in c.health()
                        if h["job"] == "hybridnb-dask-worker"] == [True]

            wait_until(one_worker_left, timeout=30, interval=0.5,
                       what="the collector dropped the removed worker")
    mon = Monitor(store_path=tmp_path / "m.db")
    mem = mon.query('dask_worker_memory_bytes{job="hybridnb-dask-worker"}', window="5m")
    assert set(mem["name"]) == {"etl"} and set(mem["instance"]) == workers


def _run_lines(run_dir, now, steps=(1, 2, 3)):
    run_dir.mkdir()
    lines = [{"kind": "step", "step": s, "loss": 2.0 / s, "lr": 0.1, "time": now - 60 + s}
             for s in steps]
    lines += [{"kind": "epoch", "step": steps[-1], "epoch": 1, "val_accuracy": 0.9,
               "time": now - 50}, {"kind": "final", "step": steps[-1],
                                   "test_accuracy": 0.95, "time": now - 49}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_a_run_that_ended_before_the_collector_is_shown_whole(hybridnb_home, tmp_path):
    now = time.time()
    _run_lines(tmp_path / "run", now)
    state = StateStore()
    rec = state.add(Kind.run, "digits", site="local", status=Status.running,
                    spec={"run_dir": str(tmp_path / "run")})
    state.update(rec.id, status=Status.succeeded)
    path = tmp_path / "m.db"
    for _ in range(2):  # a second collector on the same store adds nothing twice
        with Collector(interval=60, store_path=path, host=False, retention="1h") as c:
            summary = c.collect_once(now=now)
            c.collect_once(now=now + 1)
        assert summary["up"] == 0 and summary["down"] == [] and c.health() == []
    mon = Monitor(store_path=path)
    loss = mon.query("hybridnb_train_loss", window="5m", end=now + 1)
    assert loss["value"].tolist() == pytest.approx([2.0, 1.0, 2.0 / 3])
    assert set(loss["run"]) == {"digits"}
    assert [t.timestamp() for t in loss["time"]] == pytest.approx(
        [now - 59, now - 58, now - 57])
    acc = mon.query("hybridnb_train_accuracy", window="5m", end=now + 1)
    assert acc["value"].tolist() == pytest.approx([0.9, 0.95])
    assert mon.query('up{job="hybridnb-train"}', window="5m", end=now + 1).empty


def test_follows_what_starts_after_it_at_once(hybridnb_home, metrics_server, tmp_path):
    srv = metrics_server(EXPOSITION.format(ok=1, err=0))
    state = StateStore()
    # A long rediscovery period: only the record's appearance can add the target.
    with Collector(interval=60, rediscover=3600, store_path=tmp_path / "m.db",
                   host=False) as c:
        assert c.collect_once()["up"] == 0
        ep = state.add(Kind.endpoint, "mlp", site="local", address=srv.url,
                       status=Status.running)
        assert c.collect_once()["up"] == 1
        state.update(ep.id, status=Status.stopped)
        t = time.time()
        c.collect_once(now=t)
        assert c.health() == []
    mon = Monitor(store_path=tmp_path / "m.db")
    # Gone at once (a staleness marker), not for the five minutes of lookback.
    raw = mon.query("up", window="1m", end=t + 1)["value"].tolist()
    assert raw[0] == 1.0 and math.isnan(raw[-1])
    assert mon.query("up > -1", window="1s", step="1s", end=t + 1).empty
    assert mon.query("hybridnb_endpoint_queue_depth > 0", window="1s", step="1s",
                     end=t + 1).empty


def test_a_failed_scrape_marks_its_series_stale(metrics_server, closed_port, tmp_path):
    srv = metrics_server(EXPOSITION.format(ok=1, err=0))
    with Collector(interval=60, store_path=tmp_path / "m.db", discover=False,
                   host=False) as c:
        c.add_target(srv.url, job="x")
        t = time.time()
        c.collect_once(now=t)
        srv.stop()
        c.collect_once(now=t + 1)
    mon = Monitor(store_path=tmp_path / "m.db")
    depth = "hybridnb_endpoint_queue_depth"
    assert mon.query(f"{depth} > 0", window="1s", step="1s", end=t + 0.5)["value"].tolist() \
        == [2.0]
    assert mon.query(f"{depth} > 0", window="1s", step="1s", end=t + 2).empty
    assert set(mon.query("up == 0", window="1s", step="1s", end=t + 2)["value"]) == {0.0}


@pytest.mark.slow
def test_a_deployment_is_seen_as_a_router_and_its_replicas(hybridnb_home, tmp_path):
    import torch

    import hybridnb
    from hybridnb.serve.model_bundle import bundle

    torch.manual_seed(0)
    tiny = bundle(torch.nn.Linear(4, 2), torch.zeros(1, 4), tmp_path / "tiny", name="tiny",
                  labels=["a", "b"])
    with Collector(interval=60, rediscover=3600, store_path=tmp_path / "m.db",
                   host=False) as c, hybridnb.deploy(tiny, replicas=2) as endpoint:
        for _ in range(3):
            endpoint.predict(torch.zeros(1, 4).numpy())
        assert c.collect_once()["up"] == 3
        up = Monitor(store_path=tmp_path / "m.db").query("up", window="1m")
        assert sorted(up["role"]) == ["replica", "replica", "router"]
        endpoint.scale(1)  # the record changes: followed at the next round
        assert c.collect_once()["up"] == 2
    mon = Monitor(store_path=tmp_path / "m.db")
    up = mon.query('up{role="replica"}', window="5m")
    assert set(up["replica"]) == {"replica-0", "replica-1"} and set(up["name"]) == {"tiny"}
    assert set(mon.query('up{role="router"}', window="5m")["role"]) == {"router"}
