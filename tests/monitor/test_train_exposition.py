"""A training run's HTTP exposition: served, discovered through the state store, scraped."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from hybridnb.monitor import Collector, Monitor, file_sd
from hybridnb.monitor.targets import discover
from hybridnb.state import Kind, StateStore, Status
from hybridnb.train.metrics import MetricsServer


def write_steps(run_dir, steps, start=1):
    """Append metrics lines as rank 0 does."""
    with open(run_dir / "metrics.jsonl", "a") as fh:
        for s in range(start, start + steps):
            fh.write(json.dumps({"kind": "step", "step": s, "loss": 1.0 / s, "lr": 0.1,
                                 "samples_per_second": 100.0 + s, "step_seconds": 0.01,
                                 "time": time.time()}) + "\n")


def test_run_metrics_over_http_are_discovered_and_scraped(hybridnb_home, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_steps(run_dir, 3)
    state = StateStore()
    # A run directory this host does not see (a run elsewhere): only HTTP reaches it.
    rec = state.add(Kind.run, "digits", site="local", status=Status.running,
                    spec={"run_dir": str(tmp_path / "on-another-host")})
    with MetricsServer(run_dir, run="digits") as server:
        state.update(rec.id, address=server.url)
        [target] = discover(state)
        assert (target.job, target.url) == ("hybridnb-train", server.url + "/metrics")
        assert file_sd([target]) == [{"targets": [server.url.split("//")[1]],
                                      "labels": {"job": "hybridnb-train", "name": "digits"}}]
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url + "/other")
        with Collector(interval=60, store_path=tmp_path / "m.db", host=False,
                       state=state) as c:
            t0 = time.time()
            c.collect_once(now=t0)
            write_steps(run_dir, 2, start=4)  # the run goes on between scrapes
            summary = c.collect_once(now=t0 + 1)
        assert summary["down"] == []
    loss = Monitor(store_path=tmp_path / "m.db").query(
        'hybridnb_train_loss{run="digits"}', window="1m", end=t0 + 1)
    values = loss.sort_values("time")["value"].tolist()
    assert sorted(set(values)) == [pytest.approx(1 / 5), pytest.approx(1 / 3)]
    assert values[-1] == pytest.approx(1 / 5)
    assert set(loss["job"]) == {"hybridnb-train"} and set(loss["name"]) == {"digits"}


def test_server_keeps_only_the_newest_lines(tmp_path):
    write_steps(tmp_path, 50)
    with MetricsServer(tmp_path, run="r") as server:
        for _ in range(2):  # the second scrape reads no new line and keeps the values
            body = urllib.request.urlopen(server.url + "/metrics").read().decode()
            assert 'hybridnb_train_loss{run="r"} 0.02' in body
            assert 'hybridnb_train_samples_per_second{run="r"} 150.0' in body
