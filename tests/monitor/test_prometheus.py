"""A real Prometheus (Debian's) scrapes a real endpoint found through the exports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import yaml

from hybridnb.monitor import Monitor, plot_requests, write_exports

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tiny_bundle(tmp_path):
    torch = pytest.importorskip("torch")
    from hybridnb.serve.bundle import bundle

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    return bundle(model, torch.randn(2, 4), tmp_path / "tiny", name="tiny",
                  labels=["a", "b", "c"])


def test_real_prometheus_scrapes_an_endpoint(hybridnb_home, tiny_bundle, tmp_path):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (Debian package 'prometheus'; CI installs it)")
    import httpx
    import matplotlib

    matplotlib.use("Agg")
    from hybridnb.serve.process import start_server

    with start_server(tiny_bundle.path, name="tiny") as server:
        body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
        for _ in range(5):
            assert httpx.post(f"{server.url}/v1/models/tiny:predict", json=body,
                              headers=server.headers, timeout=10).status_code == 200
        out = tmp_path / "prom"
        write_exports(out)
        config = yaml.safe_load((out / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        (out / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed in finally
        proc = subprocess.Popen(
            [prometheus, f"--config.file={out / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            mon = Monitor("prometheus", url, timeout=5)
            deadline = time.monotonic() + 40
            targets: list[dict] = []
            while time.monotonic() < deadline:
                try:
                    targets = mon.targets()
                except Exception:  # not listening yet
                    targets = []
                if any(t["up"] for t in targets):
                    break
                time.sleep(0.5)
            assert [t["name"] for t in targets if t["up"]] == ["tiny"], \
                (targets, (tmp_path / "prometheus.log").read_text()[-2000:])
            frame = None
            while time.monotonic() < deadline:
                frame = mon.query('hybridnb_endpoint_requests_total{code="200"}', window="1m",
                                  step="1s")
                if not frame.empty:
                    break
                time.sleep(0.5)
            assert frame is not None and not frame.empty
            assert frame["value"].max() >= 5 and set(frame["name"]) == {"tiny"}
            up = mon.query("up", window="1m", step="1s")
            assert set(up["job"]) == {"hybridnb-endpoint"}
            fig = plot_requests(mon, window="1m")
            fig.savefig(tmp_path / "requests.png")
            assert (tmp_path / "requests.png").stat().st_size > 1000
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
