"""ShardLoader: per-rank shards to torch tensors, in whole batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridnb.data import Pipeline, ShardLoader, synthetic_images, synthetic_table
from hybridnb.errors import UsageError


@pytest.fixture
def prepared(tmp_path, hybridnb_home, cache):
    ds = synthetic_images(1000, (4, 4), classes=5, chunk_rows=128)
    return Pipeline([{"split": {"seed": 0}}]).run(ds, out=tmp_path / "d", cache_dir=cache,
                                                  progress=False)


def collect(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_ranks_read_disjoint_parts_that_cover_the_split(prepared):
    n = prepared.counts["train"]
    seen = []
    for rank in range(3):
        loader = ShardLoader(prepared.path, split="train", rank=rank, world_size=3,
                             batch_size=32, shuffle=True, seed=1)
        x, y = collect(loader)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (4, 4)
        assert len(x) == n // 3 and len(loader) == -(-(n // 3) // 32)
        seen.append(loader.order())
    every = np.concatenate(seen)
    assert len(np.unique(every)) == len(every) == 3 * (n // 3)


def test_batches_match_the_shards_and_set_epoch_reshuffles(prepared):
    plain = ShardLoader(prepared.path, split="train", batch_size=50)
    x, y = collect(plain)
    files = [s["files"] for s in prepared.manifest["shards"] if s["split"] == "train"]
    ref = np.concatenate([np.load(prepared.path / f["x"]) for f in files])
    np.testing.assert_array_equal(x.numpy(), ref)
    loader = ShardLoader(prepared.path, split="train", batch_size=50, shuffle=True, seed=4)
    a = loader.order()
    loader.set_epoch(1)
    b = loader.order()
    assert not np.array_equal(a, b) and sorted(a) == sorted(b)
    loader.set_epoch(0)
    np.testing.assert_array_equal(loader.order(), a)
    xs, ys = collect(loader)
    np.testing.assert_array_equal(xs.numpy(), ref[a])  # batched gathers keep the order
    np.testing.assert_array_equal(ys.numpy(), y.numpy()[a])


def test_drop_last_and_bad_arguments(prepared):
    n = prepared.counts["validation"]
    loader = ShardLoader(prepared.manifest, split="validation", batch_size=7, drop_last=True)
    assert len(loader) == n // 7 and all(len(x) == 7 for x, _ in loader)
    assert "ShardLoader" in repr(loader) and "<b>ShardLoader" in loader._repr_html_()
    with pytest.raises(UsageError, match="split 'trian'"):
        ShardLoader(prepared.path, split="trian")
    with pytest.raises(UsageError, match="rank 2 is not in range"):
        ShardLoader(prepared.path, rank=2, world_size=2)
    with pytest.raises(UsageError, match="no prepared dataset"):
        ShardLoader(prepared.path / "nope")


def test_parquet_shards_load_as_tensors(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(300, 3, seed=0, partitions=2)
    r = Pipeline([{"split": {}}, {"standard_scale": {}}]).run(
        ds, out=tmp_path / "t", cache_dir=cache, progress=False)
    x, y = collect(r.loader("train", batch_size=64))
    assert x.shape == (r.counts["train"], 3) and x.dtype == torch.float32
    assert set(y.tolist()) <= {0, 1, 2}
