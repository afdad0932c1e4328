# %% [markdown]
# # Sites and placement
#
# A **site** is where compute lives (tier, backend, capacity, cost, which data
# classifications may live there); a **dataset** says where data lives and how
# sensitive it is. `hybridnb.plan` ranks every site for a job and explains each
# rejection. Nothing here needs a cloud: the hybrid configuration below is only
# planned against, and the one cluster started runs on `local`.

# %% tags=["parameters"]
cpu = 8                  # what the planned training job needs
gpu = 2
hours = 3.0
workers = 2              # workers of the local cluster at the end
out_dir = "build/notebooks/01_sites"

# %%
# %matplotlib inline
from pathlib import Path

import hybridnb

out = Path(out_dir).expanduser().resolve()
out.mkdir(parents=True, exist_ok=True)
print(f"hybridnb {hybridnb.__version__}; files go to {out}")

# %% [markdown]
# ## The embedded default: one `local` site

# %%
import pandas as pd

config = hybridnb.load_config()
print("layers:", " → ".join(config.layers))
pd.DataFrame([{"site": s.name, "tier": s.tier, "backend": s.backend,
               "cpu": s.capacity.cpu, "classifications": ", ".join(s.classifications)}
              for s in config.sites.values()])

# %% [markdown]
# ## A hybrid configuration
#
# An on-prem cluster that may hold personal data, and a public cloud that may not.
# In a project this is `./hybridnb.yaml`; here it is written to the output directory
# and loaded explicitly.

# %%
hybrid_yaml = out / "hybridnb.yaml"
hybrid_yaml.write_text("""\
# An on-prem site that may hold personal data and a public cloud that may not.
# Used by notebooks/01_sites_and_placement and the planner's CLI tests.
sites:
  local: null                      # drops the built-in local site: placement is onprem or aws
  onprem:
    tier: private
    capacity: {cpu: 8, memory: 64GiB}
    classifications: [public, internal, pii]
  aws:
    tier: public
    backend: scheduler
    scheduler: {address: tls://10.0.0.5:8786}
    capacity: {cpu: 256, memory: 1TiB, gpu: 8}
    cost: {cpu_hour: 0.05, gpu_hour: 3.0, egress_gb: 0.09}
    classifications: [public, internal]
datasets:
  scans: {site: onprem, path: /data/scans, size: 50GB, classification: internal}
  patients: {site: onprem, path: /data/patients, size: 5GB, classification: pii}
""")
hybrid = hybridnb.load_config(hybrid_yaml)
sorted(hybrid.sites)

# %% [markdown]
# ## Where should training on `scans` run?
#
# The GPUs are in the cloud, so the planner moves the job there and counts the egress
# of 50 GB; `onprem` is rejected for lack of GPUs.

# %%
p = hybridnb.plan("train", cpu=cpu, gpu=gpu, hours=hours, data=["scans"], config=hybrid)
hybridnb.record("train_scans_site", p.chosen.site if p.chosen else None)
pd.DataFrame(p.to_rows())

# %% [markdown]
# ## And on `patients`?
#
# Personal data may not leave `onprem`, which has no GPUs: no site qualifies, and every
# rejection says why. Asking for CPUs only brings `onprem` back.

# %%
blocked = hybridnb.plan("train", cpu=cpu, gpu=gpu, hours=hours, data=["patients"],
                        config=hybrid)
for r in blocked.rejected:
    print(f"{r.site:8} {'; '.join(r.reasons)}")
cpu_only = hybridnb.plan("train", cpu=cpu, hours=hours, data=["patients"], config=hybrid)
hybridnb.record("train_patients_site", cpu_only.chosen.site if cpu_only.chosen else None)
hybridnb.record("rejected_with_gpu", len(blocked.rejected))
print("CPU only:", cpu_only.chosen.site if cpu_only.chosen else None)

# %%
from matplotlib.figure import Figure

fig = Figure(figsize=(6, 2.5), layout="constrained")
ax = fig.subplots()
ax.barh([c.site for c in p.choices], [c.total_cost for c in p.choices])
ax.set_xlabel("estimated cost (USD), compute + egress")
ax.set_title("feasible sites for training on 'scans'")
fig.savefig(out / "placement.png", dpi=80)
fig

# %% [markdown]
# ## A real cluster on the chosen local site
#
# Work is pinned to workers allowed to hold the data's classification.

# %%
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
