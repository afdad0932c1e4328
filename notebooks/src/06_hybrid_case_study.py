# %% [markdown]
# # The hybrid case, end to end
#
# Three hosts on this machine — network namespaces joined by a bridge, their links
# rate-limited with `tc tbf`: **onprem** (an `ssh` site through Debian's sshd, the
# only one allowed `pii`), **cloud** (a public `scheduler` site with a price), and
# **edge** (an edge site with one CPU behind a 20 Mbit/s link, running the edge agent).
#
# The notebook asks the planner where each step runs, prepares the patients' scans
# (`pii`) on onprem while the cloud's workers burst into the same scheduler for a
# public dataset, trains with DDP where the scans may go, ships the model bundle —
# never the data — to the edge and queries it across the link, watches every site
# (with an alert that fires when the edge's link goes down), and cleans up every
# process on every host. Each step's wall time and the bytes through each host's link
# are measured; what each worker received comes from the workers' own records.
#
# Needs root (network namespaces). `make demo-hybrid` runs it headless.

# %% tags=["parameters"]
epochs = 4               # training epochs on the patients' scans
public_images = 20000    # the public dataset's size (synthetic 8×8 images)
burst_workers = 2        # cloud workers that join the on-prem scheduler
private_mbit = 1000.0    # onprem and cloud links (Mbit/s)
edge_mbit = 20.0         # the edge's link (Mbit/s)
outage_s = 8.0           # how long the edge's link goes down
out_dir = "build/demo-hybrid"

# %%
# %matplotlib inline
from pathlib import Path

import hybridnb

out = Path(out_dir).expanduser().resolve()
out.mkdir(parents=True, exist_ok=True)
print(f"hybridnb {hybridnb.__version__}; files go to {out}")

# %% [markdown]
# ## 1. Three hosts
#
# `HybridCase` makes the hosts, limits their links, starts sshd on onprem and the edge
# agent on edge, writes the patients' records to the on-prem disk and the sites'
# configuration. The hosts share this machine's file system; only the network is each
# host's own, so the bytes below are what crossed the links.

# %%
import time

import pandas as pd

from hybridnb.testing.hybrid_case import ROLES, HybridCase

started = time.monotonic()
case = HybridCase(out / "case", private_mbit=private_mbit, edge_mbit=edge_mbit)
with case.phase("hosts"):
    case.start()
config = case.config()
print(case)
pd.DataFrame([{"site": s.name, "host": case.hosts[s.name].address, "tier": s.tier,
               "backend": s.backend, "cpu": s.capacity.cpu,
               "link (Mbit/s)": s.network.bandwidth_mbps, "$ per CPU-hour": s.cost.cpu_hour,
               "$ per GB out": s.cost.egress_gb,
               "may hold": ", ".join(s.classifications)} for s in config.sites.values()])

# %% [markdown]
# ## 2. Where does each step run?
#
# The planner sees the sites' capacity, tier, prices, links and which classifications
# they may hold. The scans are `pii`: only onprem may process them. The public
# dataset needs more CPUs than onprem has, so it bursts to the cloud. Serving goes to
# the edge, near its users; what moving the model there costs in time is asked in
# section 7, once the bundle exists and its size is known.

# %%
from typing import Any

steps: dict[str, dict[str, Any]] = {
    "prepare the scans (pii)": dict(kind="preprocess", cpu=2, hours=0.1, data=["patients"]),
    "prepare the public data": dict(kind="preprocess", cpu=4, hours=0.1),
    "train on the scans": dict(kind="train", cpu=2, hours=0.2, data=["patients"]),
    "serve the model": dict(kind="serve", cpu=1, hours=24, tiers=["edge"]),
}
plans = {step: hybridnb.plan(config=config, **ask) for step, ask in steps.items()}
for step, p in plans.items():
    print(f"{step}: {p.chosen.site if p.chosen else 'nowhere'}")
    for r in p.rejected:
        print(f"    not {r.site}: {'; '.join(r.reasons)}")
    for n in p.notes:
        print(f"    note: {n}")
hybridnb.record("placement", {step: p.chosen.site if p.chosen else None
                              for step, p in plans.items()})
hybridnb.record("placement_estimates", {
    step: {"compute_usd": p.chosen.compute_cost, "egress_usd": p.chosen.egress_cost,
           "transfer_hours": p.chosen.transfer_hours}
    for step, p in plans.items() if p.chosen})
pd.DataFrame([{"step": step, **row} for step, p in plans.items() for row in p.to_rows()])

# %% [markdown]
# ## 3. One scheduler on onprem, the cloud's workers bursting into it
#
# `hybridnb.cluster("onprem")` starts the scheduler and two workers over SSH (TLS:
# they listen beyond loopback). The cloud is a `scheduler` site whose address is that
# scheduler's (`ssh.scheduler_port` fixes its port): its workers are started the way
# a cloud starts them (`hybridnb worker ADDRESS --site cloud`, with the cluster's TLS
# files) and join, tagged with their site and the classifications it may hold. The
# scheduler stays on the private site: the tasks it hands out never leave it.
#
# Every worker records what it receives — each task with the classifications its
# restrictions name, the bytes it fetched for them, and every file it opened on the
# on-prem disk — in a log of its own (`hybridnb.sites.residency`). The collector
# starts too: it scrapes the scheduler on onprem, the cloud's workers and the training
# run, and reads the edge's agent.

# %%
from hybridnb.monitor import Collector, default_rules
from hybridnb.monitor.edge import EdgeIngest
from hybridnb.sites.residency import per_site, read_residency, record_residency, residency_frame

with case.phase("cluster and burst"):
    c = hybridnb.cluster("onprem", n_workers=2, threads_per_worker=1,
                         name=case.cluster_name, config=config)
    record_residency(c, out / "residency", watch=[case.disk("onprem")])
    case.burst(burst_workers, config=config)
    c.wait_for_workers(2 + burst_workers, timeout=120)
workers = c.workers()
hybridnb.record("workers", {s: sum(w.site == s for w in workers)
                            for s in ("onprem", "cloud")})

metrics_db = out / "metrics.db"
metrics_db.unlink(missing_ok=True)
rules = [r for r in default_rules(edge_unreachable_minutes=0.05)
         if r.name == "EdgeSiteUnreachable"]  # fires 3 s after the edge's link drops
collector = Collector(interval=1.0, store_path=metrics_db, rediscover=2, host=False,
                      rules=rules)
(edge_ingest,) = EdgeIngest.from_config(collector.store, config, interval=0.5)
collector.add_source(edge_ingest)
collector.start()
pd.DataFrame([{"worker": w.address, "site": w.site,
               "may run": ", ".join(sorted(k[5:] for k in w.resources
                                           if k.startswith("data-")))} for w in workers])

# %% [markdown]
# ## 4. The scans stay on onprem; the public data bursts to the cloud
#
# The pipeline pins work on a dataset to the workers allowed to hold its
# classification: the scheduler gives the scans' tasks to onprem's workers only, even
# with the cloud's workers idle next to them. Its output — the prepared scans — is
# written to the on-prem disk. The public dataset has no such limit: its tasks run on
# every worker, the cloud's included.

# %%
from hybridnb.data import load, synthetic_images

scans = load("patients", config=config, labels=case.records / "labels.npy",
             chunk_rows=300)
prepare = hybridnb.Pipeline([
    {"split": {"train": 0.8, "validation": 0.1, "test": 0.1, "stratify": True, "seed": 0}},
    {"standard_scale": {}},
    {"augment": {"shift": 1, "rotate": 10, "noise": 0.05, "copies": 1, "seed": 0}},
], name="scans", shard_rows=512)
with case.phase("prepare the scans (pii)"):
    prepared = prepare.run(scans, out=case.disk("onprem") / "prepared" / "scans",
                           cluster=c, cache_dir=case.disk("onprem") / "cache",
                           progress=False, force=True)

public = synthetic_images(public_images, (8, 8), classes=10, seed=0, chunk_rows=2000,
                          name="public", site="cloud", classification="public")
prepare_public = hybridnb.Pipeline([
    {"split": {"train": 0.9, "validation": 0.05, "test": 0.05, "seed": 0}},
    {"standard_scale": {}},
], name="public", shard_rows=4096)
with case.phase("prepare the public data (burst)"):
    prepared_public = prepare_public.run(
        public, out=case.disk("cloud") / "prepared" / "public", cluster=c,
        cache_dir=case.disk("cloud") / "cache", progress=False, force=True)
hybridnb.record("scans_counts", prepared.counts)
hybridnb.record("public_counts", prepared_public.counts)
prepared

# %% [markdown]
# The burst is over: the cloud's workers retire (their data moves first) and stop.
# Training then has onprem's workers only.

# %%
with case.phase("end of the burst"):
    retired = case.end_burst(c)
print(f"retired {len(retired)} cloud workers; left: {[w.site for w in c.workers()]}")

# %% [markdown]
# ## 5. Train where the scans may go
#
# Two DDP ranks (gloo), one per on-prem worker, started by the `dask` launcher; they
# read the prepared scans from the on-prem disk. `fit` writes a model bundle at the
# end: weights and the preprocessing's statistics, no data.

# %%
import shutil

run_dir = case.disk("onprem") / "runs" / "scans-cnn"
shutil.rmtree(run_dir, ignore_errors=True)
spec = hybridnb.TrainSpec(
    name="scans-cnn", model="digits_cnn", data={"path": str(prepared.path)},
    epochs=epochs, batch_size=32, seed=0, precision="fp32", strategy="ddp",
    optimizer={"name": "adam", "lr": 0.003},
    schedule={"name": "cosine", "warmup_steps": 10})
with case.phase("train (DDP on onprem)"):
    result = hybridnb.fit(spec, site="onprem", nprocs=2, launcher="dask", cluster=c,
                          config=config, run_dir=run_dir)
hybridnb.record("test_accuracy", result.accuracy)
hybridnb.record("world_size", result.result["world_size"])
result

# %% [markdown]
# ## 6. What each worker received
#
# The workers' own records, per worker: tasks by the classification their
# restrictions name, the bytes fetched from peers for them, and files opened on the
# on-prem disk. The cloud's workers received no `pii` task, fetched no `pii` byte and
# opened no on-prem file; the ranks (the `run_rank` tasks) ran on onprem's workers.

# %%
residency = read_residency(out / "residency")
sites = dict(sorted(per_site(residency).items(), key=lambda kv: ROLES.index(kv[0])))
ranks = sorted(r.site for r in residency for key in r.keys if key.startswith("run_rank"))
hybridnb.record("pii_tasks", {s: r.received("pii")[0] for s, r in sites.items()})
hybridnb.record("pii_bytes_in", {s: r.received("pii")[1] for s, r in sites.items()})
hybridnb.record("other_tasks", {s: r.tasks.get("unrestricted", 0) for s, r in sites.items()})
hybridnb.record("onprem_files_opened", {s: len(r.opened) for s, r in sites.items()})
hybridnb.record("rank_sites", ranks)
per_worker = residency_frame(residency)
per_worker

# %% [markdown]
# ## 7. Ship the bundle to the edge and query it there
#
# First the planner again, now with the bundle as a dataset on onprem (its real size):
# its estimate of the move is the bundle's bytes over the onprem→edge link's 20 Mbit/s.
# `push` sends the bundle's files to the edge agent once, resumable and checksummed;
# the agent stages the new version, checks it, and switches. Only the bundle's files
# reach the edge: the agent's blob store holds exactly their digests. Then the
# notebook queries the edge's endpoint across the 20 Mbit/s link with public images
# and checks the answers against the bundle run here.

# %%
import httpx
import numpy as np

from hybridnb.fileio import sha256_file
from hybridnb.serve.edge import manifest_of, push

manifest, _files = manifest_of(result.bundle)
# The model (weights and the preprocessing's statistics, no records) is released for
# serving: public, so the edge may hold it.
model = {"site": "onprem", "path": str(result.bundle), "format": "bundle",
         "size": manifest.total_bytes, "classification": "public"}
with_model = hybridnb.load_config(case.config_path,
                                  overrides={"datasets": {"scans-cnn": model}})
serve = hybridnb.plan("serve", cpu=1, hours=24, tiers=["edge"], data=["scans-cnn"],
                      config=with_model).raise_if_empty()
assert serve.chosen is not None
bundle_estimate_s = serve.chosen.transfer_hours * 3600
print(f"serve at {serve.chosen.site}: moving {manifest.total_bytes} bytes there takes "
      f"{bundle_estimate_s:.2f} s by the planner's estimate")
hybridnb.record("serve_site", serve.chosen.site)
with case.phase("ship the bundle to the edge"):
    rollout = push(result.bundle, site="edge", config=config)
held = {p.name for p in (case.agent_dir / "blobs" / "sha256").iterdir()}
shipped = {e.sha256 for e in manifest.files.values()}
# The scans and everything made from them on the on-prem disk (the run's bundle aside).
data_files = [p for p in case.disk("onprem").rglob("*")
              if p.is_file() and run_dir not in p.parents]
leaked = held & {sha256_file(p) for p in data_files}
hybridnb.record("bundle_bytes", manifest.total_bytes)
hybridnb.record("push_seconds", round(rollout.seconds, 2))
hybridnb.record("push_transfer_seconds", round(rollout.transfer_seconds, 2))
hybridnb.record("push_estimate_seconds", round(bundle_estimate_s, 3))
hybridnb.record("edge_holds_only_the_bundle", held == shipped)
hybridnb.record("data_files_at_edge", len(leaked))
rollout

# %%
bundle = hybridnb.load_bundle(result.bundle)
shape = bundle.input.shape[1:]  # the batch dimension is dynamic
images = public.x[:16].compute().reshape(-1, *shape)  # public: it may go anywhere
headers = {"Authorization": f"Bearer {case.front_token}"}
body = {"inputs": [{"name": bundle.input.name, "shape": list(images.shape),
                    "datatype": "FP32", "data": images.ravel().tolist()}]}
with case.phase("query the edge"):
    answer = httpx.post(f"{case.front_url}/v2/models/{bundle.name}/infer", json=body,
                        headers=headers, timeout=30)
answer.raise_for_status()
output = answer.json()["outputs"][0]
scores = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
here = bundle.predict(images)
hybridnb.record("edge_version", answer.json().get("model_version"))
hybridnb.record("edge_agrees", bool(np.allclose(scores, here, atol=1e-4)
                                    and (scores.argmax(1) == here.argmax(1)).all()))
print(f"the edge answered {len(scores)} images as the bundle does here: "
      f"{np.allclose(scores, here, atol=1e-4)}")

# %% [markdown]
# ## 8. Watch every site; the edge's link goes down
#
# The collector has scraped onprem's scheduler, the cloud's workers and the training
# run across the links, and read the edge's agent. Now the edge's link goes down for
# `outage_s` seconds: the edge keeps answering its local clients with the version it
# has, the centre sees it `unreachable` (not `down`) and `EdgeSiteUnreachable` fires;
# when the link returns, the requests the edge served meanwhile are forwarded.

# %%
import json
import sys
import textwrap

from hybridnb.testing.waiting import wait_until

# A client on the edge host itself: it needs no link to reach its endpoint.
LOCAL_CLIENT = '''
import json, sys, urllib.request as u
url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
one = json.loads(sys.argv[4])
body = json.dumps({"inputs": [one]}).encode()
ok = 0
for _ in range(n):
    req = u.Request(url, data=body, headers={"Content-Type": "application/json",
                                             "Authorization": "Bearer " + token})
    ok += u.urlopen(req, timeout=10).status == 200
print(ok)
'''
infer_url = f"{case.front_url}/v2/models/{bundle.name}/infer"
def edge_state():
    status = edge_ingest.status()
    return status.state.value if status is not None else None

wait_until(lambda: edge_state() == "up", timeout=60, what="the edge seen up")
with case.phase("edge link down"):
    down_at = time.time()
    case.set_link("edge", up=False)
    try:
        one = {"name": bundle.input.name, "shape": [1, *shape], "datatype": "FP32",
               "data": images[0].ravel().tolist()}
        local = case.edge.run([sys.executable, "-c", textwrap.dedent(LOCAL_CLIENT),
                               infer_url, case.front_token, "20", json.dumps(one)],
                              timeout=60)
        wait_until(lambda: any(e.alert == "EdgeSiteUnreachable"
                               for e in collector.alerts.firing()),
                   timeout=60, what="EdgeSiteUnreachable firing")
        seen = edge_ingest.status()
        time.sleep(max(0.0, outage_s - (time.time() - down_at)))
    finally:
        case.set_link("edge", up=True)
    wait_until(lambda: edge_state() == "up", timeout=60, what="the edge reachable again")
    wait_until(lambda: not collector.alerts.firing(), timeout=60, what="the alert resolved")
served_locally = int(local.stdout.strip())
forwarded = wait_until(lambda: edge_ingest.request_count() >= 1 + served_locally
                       and edge_ingest.request_count(), timeout=60, what="forwarding")
history = collector.alerts.history
for state in ("firing", "resolved"):
    hybridnb.record(f"alerts_{state}", sorted({e.alert for e in history if e.state == state}))
hybridnb.record("edge_state_during_outage", seen.state.value)
hybridnb.record("served_locally_during_outage", served_locally)
hybridnb.record("edge_requests_forwarded", forwarded)
history

# %%
# Every scrape target ever seen, by the host its address is on.
host_of = {h.address: role for role, h in case.hosts.items()}
seen_up: dict[str, float] = {}
for _name, labels, _times, values in collector.store.select("up"):
    site = labels.get("site") or host_of.get(labels["instance"].rsplit(":", 1)[0], "centre")
    seen_up[site] = max(seen_up.get(site, 0.0), float(np.nanmax(values)))
collector.stop()
hybridnb.record("scraped_up", {s: seen_up[s] == 1.0 for s in sorted(seen_up)})
pd.DataFrame(collector.health())

# %% [markdown]
# ## 9. What ran where, and what crossed each link
#
# Per site: the workers' tasks by classification (their own records), the ranks, and
# what serves. Per step: wall time and bytes through each host's link (sent `out` by
# the host, `in` to it), read from the root namespace's end of each veth pair. They
# count every packet: besides the data (the public data's shuffle between the sites,
# the bundle to the edge), Dask's heartbeats and the collector's scrapes, every
# second, of the scheduler and workers (to this notebook's host, the bridge) and of
# the edge's agent. File reads and writes are not in them (the hosts share one file
# system): that only onprem's processes opened the scans' files is in the workers'
# records above; the public data's shards were written by whichever worker made them.

# %%
report = {
    "onprem": f"the scheduler; {sites['onprem'].tasks.get('pii', 0)} pii tasks, "
              f"{sites['onprem'].tasks.get('unrestricted', 0)} others; "
              f"{ranks.count('onprem')} training ranks",
    "cloud": f"{sites['cloud'].tasks.get('unrestricted', 0)} public tasks, "
             f"{sites['cloud'].tasks.get('pii', 0)} pii tasks; "
             f"{ranks.count('cloud')} training ranks",
    "edge": f"serves {bundle.name} v{answer.json().get('model_version')} "
            f"({served_locally} local requests during the outage)",
}
for site, ran in report.items():
    print(f"{site:7} {ran}")
links = case.phase_frame()
links

# %%
from matplotlib.figure import Figure

fig = Figure(figsize=(9, 3.5), layout="constrained")
ax = fig.subplots()
totals = links.set_index("phase")
width = 0.27
x = np.arange(len(totals))
for i, role in enumerate(("onprem", "cloud", "edge")):
    ax.bar(x + (i - 1) * width, (totals[f"{role} out"] + totals[f"{role} in"]) / 1e6,
           width, label=role)
ax.set_xticks(x, totals.index, rotation=20, ha="right", fontsize=8)
ax.set_ylabel("MB through the host's link")
ax.set_yscale("symlog", linthresh=0.01)
ax.legend()
fig.savefig(out / "links.png", dpi=80)
fig

# %% [markdown]
# ## 10. Clean up every host
#
# The cluster closes (its SSH processes stop), then the case stops the edge agent, the
# cloud's workers and sshd, checks that no process is left in any host
# (`ip netns pids`), and removes the hosts.

# %%
c.close()
cleanup = case.close()
phases = case.phase_frame()
hybridnb.record("left_running", cleanup["left_running"])
hybridnb.record("netns_left", cleanup["netns_left"] + cleanup["links_left"])
hybridnb.record("run_id", case.net.run_id)  # every namespace and link name starts so
hybridnb.record("bytes_per_link", {
    p.name: {role: p.total(role) for role in ("onprem", "cloud", "edge")}
    for p in case.phases})
hybridnb.record("phase_seconds", dict(zip(phases["phase"], phases["seconds"], strict=True)))
hybridnb.record("wall_seconds", round(time.monotonic() - started, 1))
(out / "report.json").write_text(json.dumps({
    "sites": report, "phases": phases.to_dict("records"),
    "workers": per_worker.to_dict("records"), "cleanup": cleanup}, indent=2, default=str))
print(f"left running: {cleanup['left_running'] or 'nothing'}; namespaces left: "
      f"{cleanup['netns_left'] or 'none'}; {time.monotonic() - started:.0f} s in all")
