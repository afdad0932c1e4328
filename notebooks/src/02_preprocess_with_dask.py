# %% [markdown]
# # Preprocessing with Dask
#
# A `Pipeline` is a list of steps (scaling, splitting, augmentation, or your own
# functions) that runs on a Dask cluster and writes shards plus a manifest. Fitted
# statistics are cached by content, so running it again costs nothing.
# The same pipeline as YAML is `notebooks/pipelines/digits.yaml`
# (`hybridnb data prepare notebooks/pipelines/digits.yaml`).

# %% tags=["parameters"]
site = "local"
workers = 2
augment_copies = 2       # augmented copies of each training image
rotate = 10              # degrees
out_dir = "build/notebooks/02_preprocess"

# %%
# %matplotlib inline
from pathlib import Path

import hybridnb

out = Path(out_dir).expanduser().resolve()
out.mkdir(parents=True, exist_ok=True)
print(f"hybridnb {hybridnb.__version__}; files go to {out}")

# %%
ds = hybridnb.load_dataset("digits")
ds

# %%
pipeline = hybridnb.Pipeline([
    {"split": {"train": 0.8, "validation": 0.1, "test": 0.1, "stratify": True, "seed": 0}},
    {"standard_scale": {}},  # after the split: statistics of the training images only
    {"augment": {"shift": 1, "rotate": rotate, "noise": 0.05, "copies": augment_copies,
                 "seed": 0}},
], name="digits", shard_rows=512)
pipeline

# %% [markdown]
# ## Run it on a cluster, then again

# %%
with hybridnb.cluster(site, n_workers=workers, threads_per_worker=1,
                      processes=False) as c:
    first = pipeline.run(ds, out=out / "digits", cluster=c, progress=False, force=True)
    again = pipeline.run(ds, out=out / "digits", cluster=c, progress=False)
hybridnb.record("counts", first.counts)
hybridnb.record("seconds", round(first.summary.seconds, 2))
hybridnb.record("rerun", again.summary.status)
print(f"first run: {first.summary.seconds:.1f} s; again: {again.summary.status}")
first

# %% [markdown]
# ## What training will read
#
# A `ShardLoader` reads one split, sharded per rank for DDP. Here: the first augmented
# training images.

# %%
from matplotlib.figure import Figure

from hybridnb.data import ShardLoader

loader = ShardLoader(first.path, split="train", batch_size=24, shuffle=True, seed=0)
x, y = next(iter(loader))
fig = Figure(figsize=(8, 3), layout="constrained")
for ax, image, label in zip(fig.subplots(3, 8).ravel(), x, y, strict=True):
    ax.imshow(image.squeeze(), cmap="gray_r")
    ax.set_title(int(label), fontsize=8)
    ax.axis("off")
fig.savefig(out / "augmented.png", dpi=80)
hybridnb.record("train_batches", len(loader))
fig
