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
   The issue's target: the collector at most Prometheus' share.
2. Query and plot one hour of one-second data of one endpoint (request counters and the
   latency histogram): p50/p95/p99 and requests/s, then the latency figure.
3. Many series: 500 series of one name, one hour at 1 s (1.8 million samples, stored
   round by round as the collector does), read whole by ``SampleStore.select`` and by
   ``Monitor.rate`` over the hour (target: p99 ≤ 100 ms for the select).
4. Retention: 24 simulated hours of rounds at 10 s (1 h retention; 200 series, a tenth
   of them replaced every simulated hour, as Dask workers come and go): series count,
   file size and this process's resident memory each simulated hour. Target: flat after
   retention (the last hour's figures within 1.2× of the second hour's).

Run: ``.venv/bin/python benchmarks/bench_monitor.py [--windows 5] [--seconds 8]``
(writes build/bench/monitor.json; about 3 minutes).
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


def many_series(path: Path, n_series: int = 500, seconds: int = 3600) -> None:
    """``n_series`` series of one name, ``seconds`` rounds at 1 s.

    Ten rounds per transaction (``timed`` samples, each at its own second) to fill in
    seconds rather than a minute; the chunks are those the collector's rounds make.
    """
    from hybridnb.monitor import SampleStore

    store = SampleStore(path, retention="2h")
    keys = [("bench_requests_total", (("instance", f"10.0.{i // 250}.{i % 250}:8000"),
                                      ("job", "bench"))) for i in range(n_series)]
    now = time.time() - seconds
    for first in range(0, seconds, 10):
        store.append_keyed((), ts=now + first + 9, timed=[
            (key, now + i, float(i * (j + 1))) for i in range(first, min(first + 10, seconds))
            for j, key in enumerate(keys)])
    store.close()


def retention_run(path: Path, hours: int = 24, step: float = 10.0, n_series: int = 200
                  ) -> dict[str, list[float]]:
    """Simulated hours of rounds under 1 h retention; figures at each simulated hour."""
    import psutil

    from hybridnb.monitor import SampleStore

    store = SampleStore(path, retention="1h")
    proc = psutil.Process()
    start = time.time() - hours * 3600
    out: dict[str, list[float]] = {"series": [], "file MB": [], "rss MB": []}
    rounds_per_hour = int(3600 / step)
    for hour in range(hours):
        # A tenth of the series are new each hour (workers replaced): old ones must go.
        keys = [("bench_up", (("instance", f"w{(i + hour * n_series // 10)}"),))
                for i in range(n_series)]
        for r in range(rounds_per_hour):
            store.append_keyed([(key, 1.0) for key in keys],
                               ts=start + hour * 3600 + r * step)
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        out["series"].append(float(store.series_count()))
        out["file MB"].append(size / 1e6)
        out["rss MB"].append(proc.memory_info().rss / 1e6)
    store.close()
    return out


def main() -> None:
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    from hybridnb.monitor import Monitor, plot_latency

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=5, help="measured windows per side")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per window")
    parser.add_argument("--query-repeat", type=int, default=20,
                        help="rounds of the 500-series queries (the p99 is of these)")
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
    from hybridnb.monitor import SampleStore

    many0 = time.perf_counter()
    many_series(tmp / "many.db")
    many_fill = time.perf_counter() - many0
    many = SampleStore(tmp / "many.db")
    many_mon = Monitor(store_path=tmp / "many.db")
    raw.update(alternate({
        "select 500 series x 1 h (1 s)": timed(lambda: many.select("bench_requests_total")),
        "rate over 500 series x 1 h": timed(lambda: many_mon.rate(
            "bench_requests_total", window="1h")),
    }, repeat=args.query_repeat, warmup=1))
    kept = retention_run(tmp / "retention.db")
    print("retention run, per simulated hour: " + "; ".join(
        f"{k} " + " ".join(f"{v:.0f}" for v in vals) for k, vals in kept.items()))
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
    select = sorted(raw["select 500 series x 1 h (1 s)"])
    figures["select_500_series_1h_p99_ms"] = 1000 * select[
        min(len(select) - 1, int(0.99 * len(select)))]
    figures["rate_500_series_1h_median_ms"] = 1000 * statistics.median(
        raw["rate over 500 series x 1 h"])
    figures["store_fill_500_series_3600_rounds_s"] = many_fill
    for key, values in kept.items():
        name = key.replace(" ", "_")
        figures[f"retention_24h_{name}_hour2"] = values[1]
        figures[f"retention_24h_{name}_hour24"] = values[-1]
        figures[f"retention_24h_{name}_growth"] = values[-1] / max(values[1], 1e-9)
    targets = {"collector_cpu_share_20_targets_1s": "< 0.05 (5% of one core)",
               "select_500_series_1h_p99_ms": "<= 100",
               **{f"retention_24h_{k.replace(' ', '_')}_growth": "<= 1.2 (flat after "
                  "retention: hour 24 / hour 2)" for k in kept}}
    if peer:
        targets["collector_over_prometheus_cpu"] = "<= 1.0 (at most Prometheus' share)"
    report("monitor", raw, figures, targets, extra={"retention_run": kept})


if __name__ == "__main__":
    main()
