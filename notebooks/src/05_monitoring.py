# %% [markdown]
# # Monitoring
#
# The embedded **collector** scrapes everything hybridnb started (endpoints, Dask
# schedulers, training runs) into SQLite and evaluates **alert rules**; `Monitor`
# queries it with a subset of PromQL, or queries a real Prometheus with the same calls.
# Here: an endpoint under traffic, two rules — a latency objective (server-side p99
# above `latency_alert_ms`), which fires when the burst of requests outruns the cores,
# and a target-down rule, which fires when a replica goes away — plots, and the rules
# exported for Prometheus.

# %% tags=["parameters"]
replicas = 2
requests = 200
concurrency = 4
interval = 0.5           # seconds between scrapes
latency_alert_ms = 10.0  # latency objective: alert when server-side p99 exceeds it
out_dir = "build/notebooks/05_monitoring"

# %%
# %matplotlib inline
from pathlib import Path

import hybridnb

out = Path(out_dir).expanduser().resolve()
out.mkdir(parents=True, exist_ok=True)
print(f"hybridnb {hybridnb.__version__}; files go to {out}")

# %% [markdown]
# An untrained digits CNN is enough to watch: bundle it and serve it.

# %%
import shutil

import torch

from hybridnb.train.models import digits_cnn

shutil.rmtree(out / "bundle", ignore_errors=True)
bundle = hybridnb.bundle(digits_cnn(), torch.zeros(1, 1, 8, 8), out / "bundle",
                         name="digits-watch", labels=[str(i) for i in range(10)])
images = torch.rand(256, 1, 8, 8).mul(16).numpy()
bundle

# %%
from hybridnb.monitor import Rule, rules_yaml

# Server-side p99 of inference requests (health checks and scrapes left out).
SERVER_P99 = ("histogram_quantile(0.99, sum by (le) (rate(hybridnb_endpoint_request_"
              'duration_seconds_bucket{route="/v2/models/{name}/infer"}[1m])))')
rules = [
    Rule(name="EndpointLatencyHigh", severity="warning",
         expr=f"{SERVER_P99} > {latency_alert_ms / 1000!r}",
         summary=f"server-side p99 latency above {latency_alert_ms:g} ms"),
    Rule(name="TargetDown", expr="up == 0", severity="critical",
         summary="a replica cannot be scraped"),
]
print(rules_yaml(rules))  # the same rules for a real Prometheus (promtool-clean)

# %%
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def send_traffic(endpoint, images, n, concurrency):
    """Send ``n`` one-image requests from ``concurrency`` threads.

    Returns each request's latency in milliseconds and the predicted class.
    """
    def one(i):
        start = time.perf_counter()
        scores = endpoint.predict(images[i % len(images)])
        return (time.perf_counter() - start) * 1000, int(np.argmax(scores[0]))

    with ThreadPoolExecutor(concurrency) as pool:
        rows = list(pool.map(one, range(n)))
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


# %% [markdown]
# Traffic first; then the endpoint scales down to one replica while the collector
# still scrapes the removed one, so `TargetDown` fires too.

# %%
from hybridnb.monitor import Collector

metrics_db = out / "metrics.db"
metrics_db.unlink(missing_ok=True)
with hybridnb.deploy(bundle, replicas=replicas) as endpoint, \
        Collector(interval=interval, store_path=metrics_db, discover=False,
                  rules=rules) as collector:
    collector.add_target(endpoint)  # its router and replicas, as they are now
    # One request per replica first, so each has an inference series to scrape; then
    # a round before and one right after the traffic: rate() sees the whole burst,
    # however short it is next to the scrape interval (a series first seen after the
    # burst has one sample, and no rate, in Prometheus too).
    for _ in range(replicas):
        endpoint.predict(images[:1])
    collector.collect_once()
    latency_ms, _ = send_traffic(endpoint, images, requests, concurrency)
    burst_at = time.time()
    collector.collect_once(now=burst_at)
    time.sleep(4 * interval)
    endpoint.scale(1)
    time.sleep(4 * interval)
    health = collector.health()
    history = collector.alerts.history
    firing = collector.alerts.firing()
print(f"{collector.rounds} scrape rounds; endpoint closed: {endpoint.closed}")
fired = sorted({e.alert for e in history if e.state == "firing"})
hybridnb.record("alerts_fired", fired)
hybridnb.record("scrape_rounds", collector.rounds)
hybridnb.record("targets", len(health))
history

# %% [markdown]
# ## Queries and plots

# %%
from hybridnb.monitor import Monitor, dashboard, plot_latency, plot_requests

m = Monitor(store_path=metrics_db)
burst = m.query(SERVER_P99, window=0, end=burst_at)  # as the rule saw it then
server_p99 = round(float(burst["value"].iloc[-1]) * 1000, 2) if len(burst) else None
client_p99 = round(float(np.percentile(latency_ms, 99)), 2)
hybridnb.record("server_p99_ms", server_p99)
hybridnb.record("client_p99_ms", client_p99)
hybridnb.record("latency_alert_ms", latency_alert_ms)
print(f"server-side p99 after the burst {server_p99} ms (objective {latency_alert_ms:g} "
      f"ms); client-side p99 {client_p99} ms")
m.targets()

# %%
from matplotlib.figure import Figure

fig = Figure(figsize=(11, 3.5), layout="constrained")
left, right = fig.subplots(1, 2)
plot_latency(m, window="5m", ax=left)
plot_requests(m, window="5m", ax=right)
fig.savefig(out / "latency_requests.png", dpi=80)
fig

# %%
dashboard(m, window="5m", save=out / "dashboard.png")
