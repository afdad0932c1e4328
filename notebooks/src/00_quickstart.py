# %% [markdown]
# # Quickstart: from data to a monitored endpoint
#
# The whole platform end to end on the embedded default (one `local` site, no
# infrastructure): ask where to run, preprocess the digits with **Dask** (scaling,
# a stratified split, augmentation), train a CNN with **2-rank DDP** in mixed
# precision, deploy it as an **endpoint with 2 replicas**, send it traffic, and
# **monitor** it with plots and an alert rule — then clean everything up.
#
# `hybridnb demo` runs this notebook headless; `hybridnb run` runs it with other
# parameters (`-p epochs 5`).

# %% tags=["parameters"]
site = "local"           # where everything runs
workers = 2              # Dask workers for preprocessing
augment_copies = 1       # augmented copies of each training image
nprocs = 2               # training ranks (DDP)
epochs = 12
precision = "bf16"       # falls back to fp32 with a warning on CPUs without bf16
replicas = 2             # endpoint replicas
requests = 400           # requests in the traffic burst
concurrency = 8          # client threads sending them at once
latency_alert_ms = 10.0  # latency objective: alert when server-side p99 exceeds it
out_dir = "build/demo"   # data, run, plots and metrics go here

# %%
# %matplotlib inline
from pathlib import Path

import hybridnb

out = Path(out_dir).expanduser().resolve()
out.mkdir(parents=True, exist_ok=True)
print(f"hybridnb {hybridnb.__version__}; files go to {out}")

# %%
from hybridnb.monitor import Collector

# The embedded collector follows what this notebook starts — the Dask cluster, the
# training run, the endpoint's router and replicas — through the state store.
metrics_db = out / "metrics.db"
metrics_db.unlink(missing_ok=True)
collector = Collector(interval=0.5, store_path=metrics_db).start()

# %% [markdown]
# ## 1. Where should it run?
#
# The planner ranks every configured site for the job and says why it rejected the
# others. On the embedded default there is one site, `local`.

# %%
config = hybridnb.load_config()
p = hybridnb.plan("train", cpu=nprocs, hours=0.1, config=config).raise_if_empty()
print(f"{len(config.sites)} site(s); the planner chose {p.chosen.site!r} "
      f"({p.chosen.tier}), {len(p.rejected)} rejected")
p

# %% [markdown]
# ## 2. Preprocess with Dask
#
# A pipeline of steps runs on a Dask cluster on the site and writes shards with a
# manifest. Statistics are fitted once and cached, so a rerun is instant.

# %%
pipeline = hybridnb.Pipeline([
    {"split": {"train": 0.8, "validation": 0.1, "test": 0.1, "stratify": True, "seed": 0}},
    {"standard_scale": {}},  # after the split: statistics of the training images only
    {"augment": {"shift": 1, "rotate": 10, "noise": 0.05, "copies": augment_copies,
                 "seed": 0}},
], name="digits", shard_rows=512)

with hybridnb.cluster(site, n_workers=workers, threads_per_worker=1,
                      processes=False) as c:
    prepared = pipeline.run("digits", out=out / "data", cluster=c, progress=False)
hybridnb.record("samples", prepared.counts)
prepared

# %% [markdown]
# ## 3. Train with 2-rank DDP
#
# `fit` starts the ranks with torch's elastic agent (gloo on CPUs), checkpoints each
# epoch and writes a model bundle (`torch.export` + safetensors) at the end.

# %%
import shutil

run_dir = out / "run"
shutil.rmtree(run_dir, ignore_errors=True)  # each run of this notebook starts afresh
spec = hybridnb.TrainSpec(
    name="digits-cnn", model="digits_cnn", data={"path": str(out / "data")},
    epochs=epochs, batch_size=32, seed=0, precision=precision, strategy="ddp",
    optimizer={"name": "adam", "lr": 0.003},
    schedule={"name": "cosine", "warmup_steps": 10})
result = hybridnb.fit(spec, site=site, nprocs=nprocs, run_dir=run_dir)
hybridnb.record("test_accuracy", result.accuracy)
hybridnb.record("precision", result.result["precision"])
hybridnb.record("train_seconds", round(result.result["seconds"], 1))
result

# %%
fig = result.plot()
fig.savefig(out / "training.png", dpi=80)
fig

# %% [markdown]
# ## 4. Deploy, send traffic, watch it
#
# The bundle is served by `replicas` server processes behind a router speaking the
# Open Inference Protocol. The embedded **collector** scrapes the router and the
# replicas twice a second and evaluates one alert rule, a latency objective:
# **server-side p99 above `latency_alert_ms` (10 ms)**, from the replicas' own
# histogram of inference requests over the last minute. 10 ms is a bucket bound, so
# the rule fires exactly when more than 1 % of requests took longer than that.
#
# Traffic comes in two parts: requests from one client, one at a time (the endpoint's
# unloaded latency: a few milliseconds), then a burst of `requests` from `concurrency`
# threads at once. When the burst outruns the machine's cores, requests queue at the
# replicas and p99 passes the objective: the alert fires because the endpoint really
# is saturated, and the summary says by how much (on a machine with cores to spare it
# may not fire, and the summary says that too). Client-side latency, measured in this
# kernel, adds the router hop and the client threads' own waiting: it is reported
# apart from the server-side figure.
#
# The endpoint applies the bundle's preprocessing itself, so it gets raw pixels: the
# split step alone, without the scaling, gives the same test images raw.

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


# %%
from hybridnb.data import ShardLoader
from hybridnb.monitor import Monitor, Rule, dashboard

bundle = hybridnb.load_bundle(result.bundle)
raw = hybridnb.Pipeline(pipeline.steps[:1], name="digits-raw").run(
    "digits", out=out / "raw", progress=False)
x_test, y_test = next(iter(ShardLoader(raw.path, split="test", batch_size=1 << 16)))
images = x_test.numpy()[:, None].astype("float32")
labels = y_test.numpy()

# Server-side p99: the replicas' histogram of inference requests (health checks and
# scrapes left out) over the last minute. The dashboard plots it; the rule checks it.
SERVER_P99 = ("histogram_quantile(0.99, sum by (le) (rate(hybridnb_endpoint_request_"
              'duration_seconds_bucket{route="/v2/models/{name}/infer"}[1m])))')
rule = Rule(name="EndpointLatencyHigh", severity="warning",
            expr=f"{SERVER_P99} > {latency_alert_ms / 1000!r}",
            summary=f"server-side p99 latency above {latency_alert_ms:g} ms")
collector.alerts.rules.append(rule)

with hybridnb.deploy(bundle, site=site, replicas=replicas) as endpoint:
    print(endpoint)
    # The whole test split, in batches: what the endpoint answers for what training
    # measured.
    scores = np.concatenate([endpoint.predict(images[i:i + 64])
                             for i in range(0, len(images), 64)])
    collector.collect_once()
    send_traffic(endpoint, images, 50, 1)  # one client, one request at a time
    one_client_at = time.time()
    collector.collect_once(now=one_client_at)
    latency_ms, _ = send_traffic(endpoint, images, requests, concurrency)
    burst_at = time.time()
    collector.collect_once(now=burst_at)  # the whole burst, however short it was
    time.sleep(2.0)  # a few more scrapes for the dashboard
    status = endpoint.status()
    alerts = list(collector.alerts.history)
print(f"endpoint closed: {endpoint.closed}")


# %%
def server_p99_ms(at):
    """The rule's p99, evaluated at a round of the collector (as the rule was)."""
    frame = Monitor(store_path=metrics_db).query(SERVER_P99, window=0, end=at)
    return round(float(frame["value"].iloc[-1]) * 1000, 2) if len(frame) else None


accuracy = float(np.mean(scores.argmax(1) == labels))
client_p50, client_p99 = (round(float(np.percentile(latency_ms, q)), 2) for q in (50, 99))
burst_p99, one_client_p99 = server_p99_ms(burst_at), server_p99_ms(one_client_at)
fired = sorted({a.alert for a in alerts if a.state == "firing"})
fired_at = next((round(a.value * 1000, 2) for a in alerts
                 if a.alert == rule.name and a.state == "firing"), None)
results = {"endpoint_accuracy": accuracy, "test_images": len(labels),
           "requests": len(latency_ms), "concurrency": concurrency,
           "client_p50_ms": client_p50, "client_p99_ms": client_p99,
           "server_p99_ms": burst_p99, "server_p99_one_client_ms": one_client_p99,
           "latency_alert_ms": latency_alert_ms, "alerts_fired": fired,
           "alert_value_ms": fired_at, "replicas_healthy": status["healthy"]}
for name, value in results.items():
    hybridnb.record(name, value)
print(f"endpoint accuracy {accuracy:.2%} on the {len(labels)} test images "
      f"(training measured {result.accuracy:.2%})")
print(f"server-side p99 (replicas' histogram): {one_client_p99} ms from one client, "
      f"{burst_p99} ms under the burst")
print(f"client-side ({len(latency_ms)} requests from {concurrency} threads in this "
      f"kernel): p50 {client_p50} ms, p99 {client_p99} ms")
verdict = (f"fired at {fired_at} ms" if fired_at is not None
           else f"did not fire: p99 stayed at or under {latency_alert_ms:g} ms")
print(f"{rule.name} (server-side p99 > {latency_alert_ms:g} ms): {verdict}")

# %% [markdown]
# ## 5. Monitoring
#
# The dashboard reads the samples the collector stored; the alert history shows when
# the rule went pending and fired.

# %%
dashboard(Monitor(store_path=metrics_db), window="5m", save=out / "dashboard.png")

# %%
from hybridnb.monitor.alerts import AlertHistory

AlertHistory(alerts)

# %% [markdown]
# ## 6. Clean up
#
# The `with` blocks already stopped the cluster and the endpoint; the collector stops
# here, and `hybridnb ps` confirms nothing of this notebook is left running.

# %%
from hybridnb.state import StateStore

collector.stop()
ours = {status["record"], result.record_id, c.record.id if c.record else None}
left = [r for r in StateStore().list(active=True) if r.id in ours]
hybridnb.record("left_running", len(left))
print(f"still running: {len(left)}; files in {out}:")
for f in sorted(out.glob("*.png")):
    print(" ", f.name)
