"""Generate the notebooks in this directory from the readable source below.

    python notebooks/_build.py            # rewrite every .ipynb here
    python notebooks/_build.py --out DIR  # write them to DIR instead (the sync test does)

Each notebook is a list of cells: :func:`md` for markdown, :func:`code` for code, and
:func:`params` for the one cell tagged ``parameters`` that papermill (``hybridnb run``)
overrides. The generated files carry no outputs and stable cell ids, so a change here
shows up as a small, reviewable diff of the .ipynb files.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str, list[str]]  # (cell type, source, tags)


def md(text: str) -> Cell:
    """A markdown cell."""
    return ("markdown", textwrap.dedent(text).strip(), [])


def code(text: str) -> Cell:
    """A code cell."""
    return ("code", textwrap.dedent(text).strip(), [])



def params(text: str) -> Cell:
    """The code cell tagged ``parameters`` (papermill injects its overrides after it)."""
    return ("code", textwrap.dedent(text).strip(), ["parameters"])


# Shared snippets -------------------------------------------------------------------------
# The training curves cell, the same in the quickstart and the training notebook.
PLOT_TRAINING = code("""
fig = result.plot()
fig.savefig(out / "training.png", dpi=80)
fig
""")


IMPORTS = """
%matplotlib inline
from pathlib import Path

import hybridnb

out = Path(out_dir).expanduser().resolve()
out.mkdir(parents=True, exist_ok=True)
print(f"hybridnb {hybridnb.__version__}; files go to {out}")
"""

TRAFFIC = '''
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
'''

# 00 quickstart ---------------------------------------------------------------------------

QUICKSTART = [
    md("""
    # Quickstart: from data to a monitored endpoint

    The whole platform end to end on the embedded default (one `local` site, no
    infrastructure): ask where to run, preprocess the digits with **Dask** (scaling,
    a stratified split, augmentation), train a CNN with **2-rank DDP** in mixed
    precision, deploy it as an **endpoint with 2 replicas**, send it traffic, and
    **monitor** it with plots and an alert rule — then clean everything up.

    `hybridnb demo` runs this notebook headless; `hybridnb run` runs it with other
    parameters (`-p epochs 5`).
    """),
    params("""
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
    """),
    code(IMPORTS),
    code("""
    from hybridnb.monitor import Collector

    # The embedded collector follows what this notebook starts — the Dask cluster, the
    # training run, the endpoint's router and replicas — through the state store.
    metrics_db = out / "metrics.db"
    metrics_db.unlink(missing_ok=True)
    collector = Collector(interval=0.5, store_path=metrics_db).start()
    """),
    md("""
    ## 1. Where should it run?

    The planner ranks every configured site for the job and says why it rejected the
    others. On the embedded default there is one site, `local`.
    """),
    code("""
    config = hybridnb.load_config()
    p = hybridnb.plan("train", cpu=nprocs, hours=0.1, config=config).raise_if_empty()
    print(f"{len(config.sites)} site(s); the planner chose {p.chosen.site!r} "
          f"({p.chosen.tier}), {len(p.rejected)} rejected")
    p
    """),
    md("""
    ## 2. Preprocess with Dask

    A pipeline of steps runs on a Dask cluster on the site and writes shards with a
    manifest. Statistics are fitted once and cached, so a rerun is instant.
    """),
    code("""
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
    """),
    md("""
    ## 3. Train with 2-rank DDP

    `fit` starts the ranks with torch's elastic agent (gloo on CPUs), checkpoints each
    epoch and writes a model bundle (`torch.export` + safetensors) at the end.
    """),
    code("""
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
    """),
    PLOT_TRAINING,
    md("""
    ## 4. Deploy, send traffic, watch it

    The bundle is served by `replicas` server processes behind a router speaking the
    Open Inference Protocol. The embedded **collector** scrapes the router and the
    replicas twice a second and evaluates one alert rule, a latency objective:
    **server-side p99 above `latency_alert_ms` (10 ms)**, from the replicas' own
    histogram of inference requests over the last minute. 10 ms is a bucket bound, so
    the rule fires exactly when more than 1 % of requests took longer than that.

    Traffic comes in two parts: requests from one client, one at a time (the endpoint's
    unloaded latency: a few milliseconds), then a burst of `requests` from `concurrency`
    threads at once. When the burst outruns the machine's cores, requests queue at the
    replicas and p99 passes the objective: the alert fires because the endpoint really
    is saturated, and the summary says by how much (on a machine with cores to spare it
    may not fire, and the summary says that too). Client-side latency, measured in this
    kernel, adds the router hop and the client threads' own waiting: it is reported
    apart from the server-side figure.

    The endpoint applies the bundle's preprocessing itself, so it gets raw pixels: the
    split step alone, without the scaling, gives the same test images raw.
    """),
    code(TRAFFIC),
    code("""
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
    """),
    code("""
    def server_p99_ms(at):
        \"\"\"The rule's p99, evaluated at a round of the collector (as the rule was).\"\"\"
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
    """),
    md("""
    ## 5. Monitoring

    The dashboard reads the samples the collector stored; the alert history shows when
    the rule went pending and fired.
    """),
    code("""
    fig = dashboard(Monitor(store_path=metrics_db), window="5m",
                    save=out / "dashboard.png")
    fig
    """),
    code("""
    from hybridnb.monitor.alerts import AlertHistory

    AlertHistory(alerts)
    """),
    md("""
    ## 6. Clean up

    The `with` blocks already stopped the cluster and the endpoint; the collector stops
    here, and `hybridnb ps` confirms nothing of this notebook is left running.
    """),
    code("""
    from hybridnb.state import StateStore

    collector.stop()
    ours = {status["record"], result.record_id, c.record.id if c.record else None}
    left = [r for r in StateStore().list(active=True) if r.id in ours]
    hybridnb.record("left_running", len(left))
    print(f"still running: {len(left)}; files in {out}:")
    for f in sorted(out.glob("*.png")):
        print(" ", f.name)
    """),
]


# 01 sites and placement ------------------------------------------------------------------

# The example configuration ships as a file users can copy (tests use it too).
HYBRID_YAML = (HERE / "config" / "hybrid-sites.yaml").read_text()

SITES = [
    md("""
    # Sites and placement

    A **site** is where compute lives (tier, backend, capacity, cost, which data
    classifications may live there); a **dataset** says where data lives and how
    sensitive it is. `hybridnb.plan` ranks every site for a job and explains each
    rejection. Nothing here needs a cloud: the hybrid configuration below is only
    planned against, and the one cluster started runs on `local`.
    """),
    params("""
    cpu = 8                  # what the planned training job needs
    gpu = 2
    hours = 3.0
    workers = 2              # workers of the local cluster at the end
    out_dir = "build/notebooks/01_sites"
    """),
    code(IMPORTS),
    md("## The embedded default: one `local` site"),
    code("""
    import pandas as pd

    config = hybridnb.load_config()
    print("layers:", " → ".join(config.layers))
    pd.DataFrame([{"site": s.name, "tier": s.tier, "backend": s.backend,
                   "cpu": s.capacity.cpu, "classifications": ", ".join(s.classifications)}
                  for s in config.sites.values()])
    """),
    md("""
    ## A hybrid configuration

    An on-prem cluster that may hold personal data, and a public cloud that may not.
    In a project this is `./hybridnb.yaml`; here it is written to the output directory
    and loaded explicitly.
    """),
    code(f"""
    hybrid_yaml = out / "hybridnb.yaml"
    hybrid_yaml.write_text({HYBRID_YAML.strip()!r} + "\\n")
    hybrid = hybridnb.load_config(hybrid_yaml)
    sorted(hybrid.sites)
    """),
    md("""
    ## Where should training on `scans` run?

    The GPUs are in the cloud, so the planner moves the job there and counts the egress
    of 50 GB; `onprem` is rejected for lack of GPUs.
    """),
    code("""
    p = hybridnb.plan("train", cpu=cpu, gpu=gpu, hours=hours, data=["scans"], config=hybrid)
    hybridnb.record("train_scans_site", p.chosen.site if p.chosen else None)
    pd.DataFrame(p.to_rows())
    """),
    md("""
    ## And on `patients`?

    Personal data may not leave `onprem`, which has no GPUs: no site qualifies, and every
    rejection says why. Asking for CPUs only brings `onprem` back.
    """),
    code("""
    blocked = hybridnb.plan("train", cpu=cpu, gpu=gpu, hours=hours, data=["patients"],
                            config=hybrid)
    for r in blocked.rejected:
        print(f"{r.site:8} {'; '.join(r.reasons)}")
    cpu_only = hybridnb.plan("train", cpu=cpu, hours=hours, data=["patients"], config=hybrid)
    hybridnb.record("train_patients_site", cpu_only.chosen.site if cpu_only.chosen else None)
    hybridnb.record("rejected_with_gpu", len(blocked.rejected))
    print("CPU only:", cpu_only.chosen.site if cpu_only.chosen else None)
    """),
    code("""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.5), layout="constrained")
    ax = fig.subplots()
    ax.barh([c.site for c in p.choices], [c.total_cost for c in p.choices])
    ax.set_xlabel("estimated cost (USD), compute + egress")
    ax.set_title("feasible sites for training on 'scans'")
    fig.savefig(out / "placement.png", dpi=80)
    fig
    """),
    md("""
    ## A real cluster on the chosen local site

    Work is pinned to workers allowed to hold the data's classification.
    """),
    code("""
    import dask.array as da

    local_plan = hybridnb.plan("preprocess", cpu=workers, hours=0.1, config=config)
    with hybridnb.cluster(local_plan.chosen.site, n_workers=workers, threads_per_worker=1,
                          config=config) as c:
        print(c)
        x = da.random.default_rng(0).standard_normal((2000, 2000), chunks=(500, 500))
        mean = float(c.compute((x @ x.T).mean(), classification="internal"))
    hybridnb.record("cluster_workers", workers)
    hybridnb.record("cluster_closed", c.closed)
    print(f"mean of X·Xᵀ: {mean:.4f}; cluster closed: {c.closed}")
    """),
]

# 02 preprocessing with Dask --------------------------------------------------------------

PREPROCESS = [
    md("""
    # Preprocessing with Dask

    A `Pipeline` is a list of steps (scaling, splitting, augmentation, or your own
    functions) that runs on a Dask cluster and writes shards plus a manifest. Fitted
    statistics are cached by content, so running it again costs nothing.
    The same pipeline as YAML is `notebooks/pipelines/digits.yaml`
    (`hybridnb data prepare notebooks/pipelines/digits.yaml`).
    """),
    params("""
    site = "local"
    workers = 2
    augment_copies = 2       # augmented copies of each training image
    rotate = 10              # degrees
    out_dir = "build/notebooks/02_preprocess"
    """),
    code(IMPORTS),
    code("""
    ds = hybridnb.load_dataset("digits")
    ds
    """),
    code("""
    pipeline = hybridnb.Pipeline([
        {"split": {"train": 0.8, "validation": 0.1, "test": 0.1, "stratify": True, "seed": 0}},
        {"standard_scale": {}},  # after the split: statistics of the training images only
        {"augment": {"shift": 1, "rotate": rotate, "noise": 0.05, "copies": augment_copies,
                     "seed": 0}},
    ], name="digits", shard_rows=512)
    pipeline
    """),
    md("## Run it on a cluster, then again"),
    code("""
    with hybridnb.cluster(site, n_workers=workers, threads_per_worker=1,
                          processes=False) as c:
        first = pipeline.run(ds, out=out / "digits", cluster=c, progress=False, force=True)
        again = pipeline.run(ds, out=out / "digits", cluster=c, progress=False)
    hybridnb.record("counts", first.counts)
    hybridnb.record("seconds", round(first.summary.seconds, 2))
    hybridnb.record("rerun", again.summary.status)
    print(f"first run: {first.summary.seconds:.1f} s; again: {again.summary.status}")
    first
    """),
    md("""
    ## What training will read

    A `ShardLoader` reads one split, sharded per rank for DDP. Here: the first augmented
    training images.
    """),
    code("""
    from matplotlib.figure import Figure

    from hybridnb.data import ShardLoader

    loader = ShardLoader(first.path, split="train", batch_size=24, shuffle=True, seed=0)
    x, y = next(iter(loader))
    fig = Figure(figsize=(8, 3), layout="constrained")
    for ax, image, label in zip(fig.subplots(3, 8).ravel(), x, y):
        ax.imshow(image.squeeze(), cmap="gray_r")
        ax.set_title(int(label), fontsize=8)
        ax.axis("off")
    fig.savefig(out / "augmented.png", dpi=80)
    hybridnb.record("train_batches", len(loader))
    fig
    """),
]

# 03 distributed training -----------------------------------------------------------------

TRAINING = [
    md("""
    # Distributed training

    `hybridnb.fit` runs a `TrainSpec` with `nprocs` ranks under torch's elastic agent
    (gloo on CPUs, NCCL on GPUs): DDP or FSDP2, mixed precision, checkpoints every
    epoch, restarts after a failed rank, and a model bundle at the end. The spec is plain
    data: the same one as YAML is `notebooks/specs/digits_cnn.yaml`.
    """),
    params("""
    site = "local"
    nprocs = 2
    epochs = 10
    strategy = "ddp"         # ddp | fsdp | single
    precision = "bf16"       # bf16 falls back to fp32 with a warning on CPUs without it
    data_path = ""           # a prepared dataset (notebook 02); empty: the built-in digits
    out_dir = "build/notebooks/03_training"
    """),
    code(IMPORTS),
    code("""
    spec = hybridnb.TrainSpec(
        name="digits-cnn", model="digits_cnn",
        data={"path": data_path} if data_path else {"dataset": "digits"},
        epochs=epochs, batch_size=32, seed=0, strategy=strategy, precision=precision,
        optimizer={"name": "adam", "lr": 0.003},
        schedule={"name": "cosine", "warmup_steps": 10}, max_restarts=1)
    spec
    """),
    code("""
    import shutil

    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # each run of this notebook starts afresh
    result = hybridnb.fit(spec, site=site, nprocs=nprocs, run_dir=run_dir)
    for key in ("test_accuracy", "steps", "world_size", "precision", "strategy"):
        hybridnb.record(key, result.result.get(key))
    hybridnb.record("seconds", round(result.result["seconds"], 1))
    result
    """),
    PLOT_TRAINING,
    md("""
    ## What the run left behind

    Checkpoints (resume with `resume=True`), per-rank logs, metrics lines (also as
    Prometheus text), and a bundle that `hybridnb.deploy` serves.
    """),
    code("""
    import json

    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
    meta = json.loads((result.bundle / "hybridnb-model.json").read_text())
    hybridnb.record("bundle", str(result.bundle))
    print("checkpoints:", checkpoints)
    print("logs:", sorted(p.name for p in (run_dir / "logs").glob("*.log")))
    print("bundle:", meta["name"], meta["inputs"][0]["shape"], meta["metrics"])
    """),
]

# 04 deploy an endpoint -------------------------------------------------------------------

ENDPOINT = [
    md("""
    # Deploy an endpoint

    `hybridnb.deploy` serves a model bundle with `replicas` processes behind a router:
    load balancing, dynamic batching, health checks, scaling, canaries. Every replica and
    the router speak the Open Inference Protocol (KServe v2) and KServe v1, so standard
    clients work unmodified.
    """),
    params("""
    site = "local"
    replicas = 2
    epochs = 3               # training, when no bundle_dir is given
    bundle_dir = ""          # a bundle (e.g. notebook 03's run/bundle); empty: train one
    requests = 200
    concurrency = 4
    out_dir = "build/notebooks/04_endpoint"
    """),
    code(IMPORTS),
    code("""
    import shutil

    if bundle_dir:
        bundle = hybridnb.load_bundle(bundle_dir)
    else:
        shutil.rmtree(out / "run", ignore_errors=True)
        trained = hybridnb.fit({"name": "digits-cnn", "model": "digits_cnn", "data": "digits",
                                "epochs": epochs, "seed": 0}, nprocs=2, run_dir=out / "run")
        bundle = hybridnb.load_bundle(trained.bundle)
    bundle
    """),
    md("""
    Test images: the held-out split of the built-in digits, as raw pixels (the endpoint
    applies the bundle's own normalization).
    """),
    code("""
    from hybridnb.train.data import load_arrays
    from hybridnb.train.spec import DataSpec

    arrays = load_arrays(DataSpec(dataset="digits"))
    stats = arrays.preprocessing
    images = (arrays.x["test"].numpy() * stats["std"] + stats["mean"]).astype("float32")
    labels = arrays.y["test"].numpy()
    images.shape
    """),
    code(TRAFFIC),
    code("""
    import httpx

    with hybridnb.deploy(bundle, site=site, replicas=replicas) as endpoint:
        print(endpoint)
        # OIP v2 with binary tensors: the whole test split, 64 images a request.
        scores = np.concatenate([endpoint.predict(images[i:i + 64])
                                 for i in range(0, len(images), 64)])
        v1 = httpx.post(f"{endpoint.url}/v1/models/{bundle.name}:predict",  # KServe v1 JSON
                        json={"instances": images[:2].tolist()}, headers=endpoint.headers)
        v2_meta = httpx.get(f"{endpoint.url}/v2/models/{bundle.name}",
                            headers=endpoint.headers).json()
        latency_ms, _ = send_traffic(endpoint, images, requests, concurrency)
        endpoint.scale(replicas + 1)
        scaled = endpoint.status()
    print(f"v1 answered {v1.status_code}: {len(v1.json()['predictions'])} predictions")
    print("v2 metadata:", v2_meta["inputs"])
    print(f"after scale: {scaled['healthy']} healthy replicas; closed: {endpoint.closed}")
    """),
    code("""
    accuracy = float(np.mean(scores.argmax(1) == labels))
    trained_accuracy = bundle.meta["metrics"].get("test_accuracy")
    p50, p99 = (float(np.percentile(latency_ms, q)) for q in (50, 99))
    hybridnb.record("test_accuracy", trained_accuracy)
    hybridnb.record("endpoint_accuracy", accuracy)
    hybridnb.record("test_images", len(labels))
    hybridnb.record("client_p50_ms", round(p50, 2))
    hybridnb.record("client_p99_ms", round(p99, 2))
    hybridnb.record("v1_status", v1.status_code)
    hybridnb.record("replicas_after_scale", scaled["healthy"])
    print(f"endpoint accuracy {accuracy:.2%} on the {len(labels)} test images "
          f"(training measured {trained_accuracy:.2%})")
    print(f"{len(latency_ms)} requests from {concurrency} threads, client-side: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    """),
    code("""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    ax.hist(latency_ms, bins=40)
    ax.axvline(p50, color="k", linestyle="--", label=f"p50 {p50:.1f} ms")
    ax.axvline(p99, color="r", linestyle="--", label=f"p99 {p99:.1f} ms")
    ax.set_xlabel("client-side latency (ms)")
    ax.set_ylabel("requests")
    ax.legend()
    fig.savefig(out / "latency.png", dpi=80)
    fig
    """),
]

# 05 monitoring ---------------------------------------------------------------------------

MONITORING = [
    md("""
    # Monitoring

    The embedded **collector** scrapes everything hybridnb started (endpoints, Dask
    schedulers, training runs) into SQLite and evaluates **alert rules**; `Monitor`
    queries it with a subset of PromQL, or queries a real Prometheus with the same calls.
    Here: an endpoint under traffic, two rules — a latency objective (server-side p99
    above `latency_alert_ms`), which fires when the burst of requests outruns the cores,
    and a target-down rule, which fires when a replica goes away — plots, and the rules
    exported for Prometheus.
    """),
    params("""
    replicas = 2
    requests = 200
    concurrency = 4
    interval = 0.5           # seconds between scrapes
    latency_alert_ms = 10.0  # latency objective: alert when server-side p99 exceeds it
    out_dir = "build/notebooks/05_monitoring"
    """),
    code(IMPORTS),
    md("An untrained digits CNN is enough to watch: bundle it and serve it."),
    code("""
    import shutil

    import torch

    from hybridnb.train.models import digits_cnn

    shutil.rmtree(out / "bundle", ignore_errors=True)
    bundle = hybridnb.bundle(digits_cnn(), torch.zeros(1, 1, 8, 8), out / "bundle",
                             name="digits-watch", labels=[str(i) for i in range(10)])
    images = torch.rand(256, 1, 8, 8).mul(16).numpy()
    bundle
    """),
    code("""
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
    """),
    code(TRAFFIC),
    md("""
    Traffic first; then the endpoint scales down to one replica while the collector
    still scrapes the removed one, so `TargetDown` fires too.
    """),
    code("""
    from hybridnb.monitor import Collector

    metrics_db = out / "metrics.db"
    metrics_db.unlink(missing_ok=True)
    with hybridnb.deploy(bundle, replicas=replicas) as endpoint, \\
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
    """),
    md("## Queries and plots"),
    code("""
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
    """),
    code("""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_latency(m, window="5m", ax=left)
    plot_requests(m, window="5m", ax=right)
    fig.savefig(out / "latency_requests.png", dpi=80)
    fig
    """),
    code("""
    dashboard(m, window="5m", save=out / "dashboard.png")
    """),
]


# Registry: file stem -> cells -------------------------------------------------------------

NOTEBOOKS: dict[str, list[Cell]] = {
    "00_quickstart": QUICKSTART,
    "01_sites_and_placement": SITES,
    "02_preprocess_with_dask": PREPROCESS,
    "03_distributed_training": TRAINING,
    "04_deploy_endpoint": ENDPOINT,
    "05_monitoring": MONITORING,
}


def build(stem: str, cells: list[Cell]) -> NotebookNode:
    """One notebook: no outputs, stable cell ids, the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    make: dict[str, Callable[..., NotebookNode]] = {
        "markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    for i, (kind, source, tags) in enumerate(cells):
        cell = make[kind](source)
        cell.id = f"{stem.split('_')[0]}-{i:02d}"
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def write_all(out: Path = HERE) -> list[Path]:
    """Write every notebook to ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, cells in NOTEBOOKS.items():
        path = out / f"{stem}.ipynb"
        nbformat.write(build(stem, cells), path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write them")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(path)


if __name__ == "__main__":
    main()
