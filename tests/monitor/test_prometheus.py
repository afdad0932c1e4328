"""A real Prometheus (Debian's) scrapes what the exports list: an endpoint, a training run."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hybridnb.monitor import Monitor, plot_requests, write_exports
from hybridnb.testing import stop_processes, wait_until

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tiny_bundle(tmp_path):
    import torch

    from hybridnb.serve.model_bundle import bundle

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    return bundle(model, torch.randn(2, 4), tmp_path / "tiny", name="tiny",
                  labels=["a", "b", "c"])


@pytest.fixture
def prometheus(tmp_path) -> Iterator[Callable[[], Monitor]]:
    """Start Debian's prometheus on what ``hybridnb monitor export`` writes (1 s scrapes);
    returns hybridnb's Prometheus backend pointed at it, once it answers."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian package 'prometheus'; CI installs it)")
    procs: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "prometheus.log"

    def start() -> Monitor:
        out = tmp_path / "prom"
        write_exports(out)
        config = yaml.safe_load((out / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        (out / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [binary, f"--config.file={out / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        mon = Monitor("prometheus", f"http://127.0.0.1:{port}", timeout=5)
        wait_until(lambda: [t for t in mon.targets() if t["up"]], timeout=40,
                   interval=0.5, what=f"a target up in Prometheus (log: {log_path})",
                   ignore=(Exception,), alive=lambda: proc.poll() is None)
        return mon

    yield start
    stop_processes(*procs)


def _query(mon: Monitor, expr: str, ok: Callable[[Any], bool] = lambda frame: True,
           what: str = "") -> Any:
    """The frame of ``expr`` over the last minute, once it has samples and ``ok(frame)``."""

    def ready() -> list[Any]:  # a list: a DataFrame has no truth value
        frame = mon.query(expr, window="1m", step="1s")
        return [frame] if not frame.empty and ok(frame) else []

    return wait_until(ready, timeout=30, interval=0.5,
                      what=what or f"samples of {expr} in Prometheus")[0]


def test_real_prometheus_scrapes_an_endpoint(hybridnb_home, tiny_bundle, prometheus, tmp_path):
    import httpx
    import matplotlib

    matplotlib.use("Agg")
    from hybridnb.serve.process import start_server

    with start_server(tiny_bundle.path, name="tiny") as server:
        body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
        for _ in range(5):
            assert httpx.post(f"{server.url}/v1/models/tiny:predict", json=body,
                              headers=server.headers, timeout=10).status_code == 200
        mon = prometheus()
        assert [t["name"] for t in mon.targets() if t["up"]] == ["tiny"]
        frame = _query(mon, 'hybridnb_endpoint_requests_total{code="200"}')
        assert frame["value"].max() >= 5 and set(frame["name"]) == {"tiny"}
        up = mon.query("up", window="1m", step="1s")
        assert set(up["job"]) == {"hybridnb-endpoint"}
        fig = plot_requests(mon, window="1m")
        fig.savefig(tmp_path / "requests.png")
        assert (tmp_path / "requests.png").stat().st_size > 1000


def test_real_prometheus_scrapes_a_training_run(hybridnb_home, prometheus, tmp_path):
    """A run's exposition, recorded as the run's address, is in file_sd and scraped."""
    from hybridnb.state import Kind, StateStore, Status
    from hybridnb.train.metrics import MetricsServer

    run_dir = Path(tmp_path / "run")
    run_dir.mkdir()

    def log_step(step: int) -> None:  # what rank 0 appends as it trains
        with open(run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"kind": "step", "step": step, "loss": 2.0 / step,
                                 "lr": 0.05, "samples_per_second": 512.0,
                                 "step_seconds": 0.02, "time": time.time()}) + "\n")

    log_step(1)
    state = StateStore()
    rec = state.add(Kind.run, "digits", site="local", status=Status.running,
                    spec={"run_dir": str(run_dir)})
    with MetricsServer(run_dir, run="digits") as server:
        state.update(rec.id, address=server.url)
        mon = prometheus()
        [target] = mon.targets()
        assert (target["job"], target["name"], target["up"]) == ("hybridnb-train", "digits",
                                                                 True)
        for step in range(2, 5):
            log_step(step)
        frame = _query(mon, 'hybridnb_train_loss{run="digits"}',
                       lambda f: f["value"].min() <= 0.5, "the loss of step 4 in Prometheus")
        assert frame["value"].min() == pytest.approx(0.5)
        assert set(frame["job"]) == {"hybridnb-train"}
        rate = _query(mon, 'hybridnb_train_samples_per_second{job="hybridnb-train"}')
        assert set(rate["value"]) == {512.0}
