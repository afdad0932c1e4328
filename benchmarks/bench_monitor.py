"""The embedded collector's cost beside a real Prometheus, and querying an hour of data.

1. CPU of scraping 20 loopback targets every second: 20 ``ThreadingHTTPServer``s in a
   subprocess serve a realistic endpoint exposition (hybridnb's own EndpointMetrics with
   traffic on two routes; HTTP/1.0, so every scrape reconnects: the costly case). This
   process runs only the collector, so its CPU time over a window is the collector's.
   The peer is Debian's ``prometheus`` scraping the same 20 targets every second (its
   process's CPU time, from psutil). The two alternate in windows, each alone: the
   collector's thread is stopped while Prometheus runs, Prometheus is paused (SIGSTOP)
   while the collector runs; the first window of each is a warm-up. Target: < 5% of one
   core for the collector (the median window).
2. Query and plot one hour of one-second data of one endpoint (request counters and the
   latency histogram): p50/p95/p99 and requests/s, then the latency figure.

Run: ``.venv/bin/python benchmarks/bench_monitor.py [--windows 5] [--seconds 8]``
(writes build/bench/monitor.json).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
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


def _servers(stack: ExitStack, n_targets: int) -> tuple[list[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVERS, str(n_targets)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def close() -> None:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)

    stack.callback(close)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    return line[:-1], int(line[-1])


def _prometheus(stack: ExitStack, ports: list[str], tmp: Path) -> subprocess.Popen | None:
    """Debian's prometheus scraping the same targets every second, or None if absent."""
    import json

    import yaml

    binary = shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed: no peer figure (apt-get install prometheus)")
        return None
    (tmp / "targets.json").write_text(json.dumps(
        [{"targets": [f"127.0.0.1:{p}" for p in ports], "labels": {"job": "bench"}}]))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "bench", "file_sd_configs": [
            {"files": [str(tmp / "targets.json")]}]}]}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = stack.enter_context(open(tmp / "prometheus.log", "wb"))  # noqa: SIM115
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop() -> None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(20)

    stack.callback(stop)
    time.sleep(3.0)  # starts, reads the targets, scrapes a few rounds
    return proc


def collector_vs_prometheus(n_targets: int, windows: int, seconds: float
                            ) -> tuple[dict[str, list[float]], int]:
    """CPU share of one core per window: the collector's, and Prometheus' if installed."""
    import psutil

    from hybridnb.monitor import Collector

    shares: dict[str, list[float]] = {"collector cpu share (20 targets, 1 s)": []}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ports, lines = _servers(stack, n_targets)
        prom = _prometheus(stack, ports, tmp)
        if prom is not None:
            shares["prometheus cpu share (20 targets, 1 s)"] = []
            prom.send_signal(signal.SIGSTOP)
        c = Collector(interval=1.0, store_path=tmp / "m.db", discover=False)
        stack.callback(c.stop)
        for port in ports:
            c.add_target(f"http://127.0.0.1:{port}/metrics", job="bench")
        c.collect_once()  # imports, series ids
        for window in range(windows + 1):  # window 0 is the warm-up of both
            cpu0, wall0 = time.process_time(), time.monotonic()
            with c:
                time.sleep(seconds)
            share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
            assert all(h["up"] for h in c.health()), c.health()
            if window:
                shares["collector cpu share (20 targets, 1 s)"].append(share)
            if prom is not None:
                ps = psutil.Process(prom.pid)
                prom.send_signal(signal.SIGCONT)
                t0, wall0 = ps.cpu_times(), time.monotonic()
                time.sleep(seconds)
                t1 = ps.cpu_times()
                prom.send_signal(signal.SIGSTOP)
                used = (t1.user - t0.user) + (t1.system - t0.system)
                if window:
                    shares["prometheus cpu share (20 targets, 1 s)"].append(
                        used / (time.monotonic() - wall0))
    return shares, lines


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
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    from hybridnb.monitor import Monitor, plot_latency

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=5, help="measured windows per side")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per window")
    args = parser.parse_args()
    shares, lines = collector_vs_prometheus(20, args.windows, args.seconds)
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
    share = statistics.median(shares["collector cpu share (20 targets, 1 s)"])
    figures = {"collector_cpu_share_20_targets_1s": share,
               "exposition_lines_per_target": float(lines),
               "store_fill_3600_rounds_s": fill}
    peer = shares.get("prometheus cpu share (20 targets, 1 s)")
    if peer:
        figures["prometheus_cpu_share_20_targets_1s"] = statistics.median(peer)
        figures["collector_over_prometheus_cpu"] = share / max(statistics.median(peer), 1e-9)
    print("cpu share per window (1.0 = one core):")
    for name, values in shares.items():
        print(f"  {name}: " + ", ".join(f"{v:.4f}" for v in values))
    for name, values in shares.items():  # the spread of the windows, next to the medians
        key = name.split()[0]
        figures[f"{key}_cpu_share_min"], figures[f"{key}_cpu_share_max"] = (min(values),
                                                                          max(values))
    report("monitor", raw, figures,
           {"collector_cpu_share_20_targets_1s": "< 0.05 (5% of one core)"})


if __name__ == "__main__":
    main()
