"""The sidebar's list call beside dask-labextension's, and what the extension adds to a
Jupyter server's start.

1. List: a ``jupyter server`` with hybridnb's extension, its state store holding 20
   running clusters and 20 running endpoints (their ``/metrics`` served by a real
   ``RouterMetrics`` exposition in another process, so p50/p99 are computed), answers
   the sidebar's list call: ``GET hybridnb/clusters`` then ``GET hybridnb/endpoints``.
   The peer is dask-labextension's server extension (its own venv, build/peers, made by
   ``benchmarks/setup_peers.sh``) in a second ``jupyter server`` holding 20 clusters it
   started (``LocalCluster``, one thread worker each, in its process, as it does),
   answering ``GET dask/clusters``. Requests alternate between the two servers, one at a
   time, after a warm-up. Target: p95 ≤ 50 ms, and no slower than the peer.
2. Start: ``jupyter server`` from launch to the first answer of ``/api/status``, with the
   extension enabled and disabled, alternating (both with everything else the venv
   enables). Target: the difference ≤ 150 ms. The marginal import of the extension
   (what the server imports at start, in a fresh interpreter that already imported
   jupyter_server) is reported too: it is the part of that difference the extension owns,
   without the noise of two whole server starts.

Run: ``python benchmarks/bench_jupyter.py [--rounds N] [--starts N]``. Writes
build/bench/jupyter.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from _report import report  # noqa: E402

from hybridnb.processes import free_port  # noqa: E402
from hybridnb.testing.waiting import wait_until  # noqa: E402

PEER = ROOT / "build" / "peers" / "dask-labextension"
TOKEN = "bench-token"
N = 20

METRICS_SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from hybridnb.serve.router import RouterMetrics

m = RouterMetrics()
for i in range(2000):
    m.duration.labels(version="stable").observe(0.001 + (i % 100) / 20000)
    m.requests.labels(code="200", replica="0", version="stable").inc()
body = m.render()

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def _server(stack: ExitStack, python: str, tmp: Path, name: str, extensions: dict[str, bool],
            env_extra: dict[str, str]) -> tuple[str, subprocess.Popen]:
    config = tmp / f"config-{name}"
    config.mkdir(exist_ok=True)
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": extensions}}))
    port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "PYTHONPATH": str(ROOT),
           "JUPYTER_RUNTIME_DIR": str(tmp / f"runtime-{name}"), **env_extra}
    log = stack.enter_context(open(tmp / f"{name}.log", "wb"))  # noqa: SIM115
    proc = subprocess.Popen(
        [python, "-m", "jupyter", "server", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(lambda: (proc.terminate(), proc.wait(timeout=60)))
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: httpx.get(f"{url}api/status", params={"token": TOKEN},
                                 timeout=2).status_code == 200, timeout=120,
               what=f"jupyter server ({name})", alive=lambda: proc.poll() is None,
               ignore=(httpx.HTTPError,))
    return url, proc


def _record(home: Path, metrics_port: int) -> None:
    """20 running clusters and 20 running endpoints in the state store, as they record."""
    from hybridnb.state import Kind, StateStore, Status

    os.environ["HYBRIDNB_HOME"] = str(home)
    store = StateStore()
    for i in range(N):
        rec = store.add(Kind.cluster, f"c{i}", "local", backend="local", pids=[os.getpid()],
                        address=f"tcp://127.0.0.1:{40000 + i}", status=Status.running,
                        spec={"sites": ["local"], "owns": True, "started_from": "cli",
                              "dashboard": f"http://127.0.0.1:{41000 + i}/status"})
        store.merge_spec(rec.id, {"workers": 2, "threads": 4, "memory_bytes": 8 * 2**30})
        store.add(Kind.endpoint, f"e{i}", "local", backend="local", pids=[os.getpid()],
                  address=f"http://127.0.0.1:{metrics_port}", status=Status.running,
                  spec={"bundle": f"/models/m{i}", "canary": None, "routing": "round_robin",
                        "replicas": {"stable": 2, "canary": 0}, "canary_percent": 0.0})


def list_call(rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    if not (PEER / "bin" / "python").exists():
        raise SystemExit(f"no peer venv at {PEER}: run bash benchmarks/setup_peers.sh "
                         "dask-labextension")
    raw: dict[str, list[float]] = {"hybridnb clusters+endpoints (ms)": [],
                                   "hybridnb clusters only (ms)": [],
                                   "dask-labextension dask/clusters (ms)": []}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-jupyter-") as t:
        tmp = Path(t)
        metrics = subprocess.Popen([sys.executable, "-c", METRICS_SERVER],
                                   stdout=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})
        stack.callback(lambda: (metrics.kill(), metrics.wait(), metrics.stdout.close()))
        port = int(metrics.stdout.readline())
        _record(tmp / "state", port)
        ours, _ = _server(stack, sys.executable, tmp, "hybridnb", {"hybridnb.jupyter": True},
                          {"HYBRIDNB_HOME": str(tmp / "state")})
        # The peer's clusters: LocalClusters in its server process, one thread worker each.
        kwargs = "{'processes': False, 'n_workers': 1, 'threads_per_worker': 1, " \
                 "'dashboard_address': ':0'}"
        peer, _ = _server(stack, str(PEER / "bin" / "python"), tmp, "peer",
                          {"dask_labextension": True},
                          {"PYTHONPATH": "", "DASK_LABEXTENSION__FACTORY__KWARGS": kwargs})
        auth = {"Authorization": f"token {TOKEN}"}
        with httpx.Client(headers=auth, timeout=30) as client:
            for _ in range(N):
                resp = client.put(f"{peer}dask/clusters")
                resp.raise_for_status()
            assert len(client.get(f"{peer}dask/clusters").json()) == N
            listed = client.get(f"{ours}hybridnb/endpoints").json()["endpoints"]
            assert len(listed) == N and listed[0]["p99_ms"] is not None, listed[0]
            assert len(client.get(f"{ours}hybridnb/clusters").json()["clusters"]) == N

            def ms(*urls: str) -> float:
                start = time.perf_counter()
                for url in urls:
                    client.get(url).raise_for_status()
                return (time.perf_counter() - start) * 1000

            for i in range(rounds + 20):  # the first 20 rounds warm up
                both = ms(f"{ours}hybridnb/clusters", f"{ours}hybridnb/endpoints")
                only = ms(f"{ours}hybridnb/clusters")
                theirs = ms(f"{peer}dask/clusters")
                if i >= 20:
                    raw["hybridnb clusters+endpoints (ms)"].append(both)
                    raw["hybridnb clusters only (ms)"].append(only)
                    raw["dask-labextension dask/clusters (ms)"].append(theirs)
    p95 = {k: statistics.quantiles(v, n=20)[18] for k, v in raw.items()}
    figures = {"list_p95_ms": p95["hybridnb clusters+endpoints (ms)"],
               "list_median_ms": statistics.median(raw["hybridnb clusters+endpoints (ms)"]),
               "list_min_ms": min(raw["hybridnb clusters+endpoints (ms)"]),
               "peer_list_median_ms": statistics.median(
                   raw["dask-labextension dask/clusters (ms)"]),
               "peer_list_min_ms": min(raw["dask-labextension dask/clusters (ms)"]),
               "clusters_only_p95_ms": p95["hybridnb clusters only (ms)"],
               "peer_list_p95_ms": p95["dask-labextension dask/clusters (ms)"]}
    figures["list_p95_over_peer"] = figures["list_p95_ms"] / figures["peer_list_p95_ms"]
    figures["clusters_only_p95_over_peer"] = (figures["clusters_only_p95_ms"]
                                              / figures["peer_list_p95_ms"])
    return raw, figures


def start_time(starts: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    raw: dict[str, list[float]] = {"server start, extension enabled (s)": [],
                                   "server start, extension disabled (s)": [],
                                   "extension import at start (ms)": []}
    with tempfile.TemporaryDirectory(prefix="bench-jupyter-start-") as t:
        tmp = Path(t)
        env = {"HYBRIDNB_HOME": str(tmp / "state")}
        for i in range(starts + 1):  # the first pair warms the file cache
            for name, exts in (("enabled", {"hybridnb.jupyter": True}),
                               ("disabled", {"hybridnb.jupyter": False})):
                with ExitStack() as stack:
                    start = time.perf_counter()
                    _server(stack, sys.executable, tmp, f"{name}-{i}", exts, env)
                    took = time.perf_counter() - start
                if i:
                    raw[f"server start, extension {name} (s)"].append(took)
            code = ("import time, jupyter_server.serverapp, jupyter_server_proxy.handlers\n"
                    "t = time.perf_counter()\n"
                    "import hybridnb.jupyter\n"
                    "points = hybridnb.jupyter._jupyter_server_extension_points()\n"
                    "from hybridnb.jupyter.handlers import routes\n"
                    "routes()\n"
                    "print((time.perf_counter() - t) * 1000)\n")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if i:
                raw["extension import at start (ms)"].append(float(out.stdout))
    on = statistics.median(raw["server start, extension enabled (s)"])
    off = statistics.median(raw["server start, extension disabled (s)"])
    figures = {"added_start_ms": (on - off) * 1000,
               "extension_import_ms": statistics.median(raw["extension import at start (ms)"])}
    return raw, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="list rounds measured")
    parser.add_argument("--starts", type=int, default=7, help="server starts of each kind")
    args = parser.parse_args()
    raw, figures = list_call(args.rounds)
    raw2, figures2 = start_time(args.starts)
    raw.update(raw2)
    figures.update(figures2)
    figures["list_p95_target_met"] = float(figures["list_p95_ms"] <= 50
                                           and figures["list_p95_over_peer"] <= 1.0)
    figures["added_start_target_met"] = float(figures["added_start_ms"] <= 150)
    report("jupyter", raw, figures,
           {"list_p95_ms": "<= 50 ms", "list_p95_over_peer": "<= 1.0",
            "added_start_ms": "<= 150 ms", "list_p95_target_met": "1 (met)",
            "added_start_target_met": "1 (met)"}, unit="mixed")


if __name__ == "__main__":
    main()
