# %% [markdown]
# # Distributed training
#
# `hybridnb.fit` runs a `TrainSpec` with `nprocs` ranks under torch's elastic agent
# (gloo on CPUs, NCCL on GPUs): DDP or FSDP2, mixed precision, checkpoints every
# epoch, restarts after a failed rank, and a model bundle at the end. The spec is plain
# data: the same one as YAML is `notebooks/specs/digits_cnn.yaml`.

# %% tags=["parameters"]
site = "local"
nprocs = 2
epochs = 10
strategy = "ddp"         # ddp | fsdp | single
precision = "bf16"       # bf16 falls back to fp32 with a warning on CPUs without it
data_path = ""           # a prepared dataset (notebook 02); empty: the built-in digits
out_dir = "build/notebooks/03_training"

# %%
# %matplotlib inline
from pathlib import Path

import hybridnb

out = Path(out_dir).expanduser().resolve()
out.mkdir(parents=True, exist_ok=True)
print(f"hybridnb {hybridnb.__version__}; files go to {out}")

# %%
spec = hybridnb.TrainSpec(
    name="digits-cnn", model="digits_cnn",
    data={"path": data_path} if data_path else {"dataset": "digits"},
    epochs=epochs, batch_size=32, seed=0, strategy=strategy, precision=precision,
    optimizer={"name": "adam", "lr": 0.003},
    schedule={"name": "cosine", "warmup_steps": 10}, max_restarts=1)
spec

# %%
import shutil

run_dir = out / "run"
shutil.rmtree(run_dir, ignore_errors=True)  # each run of this notebook starts afresh
result = hybridnb.fit(spec, site=site, nprocs=nprocs, run_dir=run_dir)
for key in ("test_accuracy", "steps", "world_size", "precision", "strategy"):
    hybridnb.record(key, result.result.get(key))
hybridnb.record("seconds", round(result.result["seconds"], 1))
result

# %%
fig = result.plot()
fig.savefig(out / "training.png", dpi=80)
fig

# %% [markdown]
# ## What the run left behind
#
# Checkpoints (resume with `resume=True`), per-rank logs, metrics lines (also as
# Prometheus text), and a bundle that `hybridnb.deploy` serves.

# %%
import json

checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
meta = json.loads((result.bundle / "hybridnb-model.json").read_text())
hybridnb.record("bundle", str(result.bundle))
print("checkpoints:", checkpoints)
print("logs:", sorted(p.name for p in (run_dir / "logs").glob("*.log")))
print("bundle:", meta["name"], meta["inputs"][0]["shape"], meta["metrics"])
