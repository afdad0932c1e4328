"""The embedded collector's cost, and the time to query and plot an hour of data.

1. CPU of scraping 20 loopback targets every second: 20 ``ThreadingHTTPServer``s in a
   subprocess serve a realistic endpoint exposition (hybridnb's own EndpointMetrics with
   traffic on two routes); this process runs only the collector, so its CPU time over
   the window is the collector's. Target: < 5% of one core.
2. Query and plot one hour of one-second data of one endpoint (request counters and the
   latency histogram): p50/p95/p99 and requests/s, then the latency figure.

Run: ``.venv/bin/python benchmarks/bench_monitor.py`` (writes build/bench/monitor.json).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import alternate, report, timed

SERVERS = r"""
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from hybridnb.serve.metrics import EndpointMetrics
m = EndpointMetrics()
for i in range(2000):
    m.observe("/v2/models/{name}/infer", 200 if i % 50 else 500, 0.001 * (i % 40))
    m.observe("/v1/models/{name}:predict", 200, 0.002 * (i % 30))
    m.batch_size.observe(1 + i % 64)
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
ports = []
for _ in range(int(sys.argv[1])):
    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
    ports.append(s.server_address[1])
print(" ".join(map(str, ports)), len(body.splitlines()), flush=True)
sys.stdin.read()  # serve until the benchmark closes stdin
"""


def collector_cpu(n_targets: int = 20, seconds: float = 10.0) -> tuple[float, int]:
    from hybridnb.monitor import Collector

    proc = subprocess.Popen([sys.executable, "-c", SERVERS, str(n_targets)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        ports, lines = line[:-1], int(line[-1])
        with tempfile.TemporaryDirectory() as tmp:
            c = Collector(interval=1.0, store_path=Path(tmp) / "m.db", discover=False)
            for port in ports:
                c.add_target(f"http://127.0.0.1:{port}/metrics", job="bench")
            c.collect_once()  # warm-up: imports, series ids
            cpu0, wall0 = time.process_time(), time.monotonic()
            with c:
                time.sleep(seconds)
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
            assert all(h["up"] for h in c.health()), c.health()
        return cpu / wall, lines
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)


def hour_store(path: Path) -> None:
    from hybridnb.monitor import SampleStore

    store = SampleStore(path, retention="2h")
    base = {"job": "hybridnb-endpoint", "instance": "127.0.0.1:8000", "name": "mlp",
            "route": "/v2/models/{name}/infer"}
    les = ("0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1.0", "+Inf")
    fracs = (0.1, 0.4, 0.6, 0.9, 0.95, 0.99, 1.0, 1.0)
    now = time.time()
    for i in range(3600):
        n = 50.0 * i
        samples = [("hybridnb_endpoint_requests_total", {**base, "code": "200"}, n),
                   ("hybridnb_endpoint_requests_total", {**base, "code": "500"}, n / 100),
                   ("up", base, 1.0)]
        samples += [("hybridnb_endpoint_request_duration_seconds_bucket", {**base, "le": le},
                     n * f) for le, f in zip(les, fracs, strict=True)]
        store.append(samples, ts=now - 3600 + i)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from hybridnb.monitor import Monitor, plot_latency

    share, lines = collector_cpu()
    tmp = Path(tempfile.mkdtemp())
    fill0 = time.perf_counter()
    hour_store(tmp / "hour.db")
    fill = time.perf_counter() - fill0
    mon = Monitor(store_path=tmp / "hour.db")
    cases = {
        "query p99 (1 h, 1 s data)": timed(lambda: mon.quantile(
            0.99, "hybridnb_endpoint_request_duration_seconds", by=["instance"],
            window="1h")),
        "query requests/s (1 h)": timed(lambda: mon.rate(
            "hybridnb_endpoint_requests_total", by=["code"], window="1h")),
        "plot latency p50/95/99 (1 h)": timed(lambda: plot_latency(mon, window="1h")
                                              .savefig(tmp / "lat.png")),
    }
    raw = alternate(cases, repeat=5, warmup=1)
    figures = {"collector_cpu_share_20_targets_1s": share,
               "exposition_lines_per_target": float(lines),
               "store_fill_3600_rounds_s": fill}
    report("monitor", raw, figures,
           {"collector_cpu_share_20_targets_1s": "< 0.05 (5% of one core)"})


if __name__ == "__main__":
    main()
