"""Each step, run through a real pipeline (dask's threads), checked against pandas/NumPy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridnb.data import (
    CheckSchema,
    Pipeline,
    ShardLoader,
    read_parquet,
    synthetic_images,
    synthetic_table,
    transform,
)
from hybridnb.data.step_registry import make_step
from hybridnb.data.transforms import assign_splits
from hybridnb.errors import UsageError


def run(ds, steps, tmp_path, cache, **kw):
    return Pipeline(steps, name="t", **kw).run(ds, out=tmp_path / "out", cache_dir=cache,
                                               progress=False)


def frame_of(result, split=None):
    files = sorted((result.path / (split or "")).rglob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def table(tmp_path, frame, parts=2):
    n = len(frame)
    for i in range(parts):
        frame.iloc[i * n // parts:(i + 1) * n // parts].to_parquet(tmp_path / f"in{i}.parquet")
    return read_parquet(sorted(tmp_path.glob("in*.parquet")), target="label")


def small(n=40):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(5, 2, n), "b": rng.normal(-1, 3, n),
                         "label": np.arange(n) % 2})


def test_drop_and_fill_missing(tmp_path, hybridnb_home, cache):
    f = small()
    f.loc[[1, 5], "a"] = np.nan
    f.loc[[5, 7], "b"] = np.nan
    ds = table(tmp_path, f)
    r = run(ds, [{"drop_missing": {}}], tmp_path, cache)
    assert r.counts == {"all": 37}
    assert r.summary.steps[0].dropped == 3
    r = run(ds, [{"drop_missing": {"how": "all", "columns": ["a", "b"]}}], tmp_path, cache)
    assert r.counts == {"all": 39}
    r = run(ds, [{"fill_missing": {"strategy": "mean"}}], tmp_path, cache)
    out = frame_of(r)
    assert out["a"].notna().all()
    assert out.loc[1, "a"] == pytest.approx(f["a"].mean())
    r = run(ds, [{"fill_missing": {"strategy": "constant", "value": -9}}], tmp_path, cache)
    assert frame_of(r).loc[7, "b"] == -9
    with pytest.raises(UsageError, match="needs value"):
        make_step("fill_missing", {"strategy": "constant"})


def test_drop_missing_on_tensors_masks_samples(tmp_path, hybridnb_home, cache):
    ds = synthetic_images(30, (4, 4), classes=2, chunk_rows=10)
    ds = ds.evolve(x=ds.x.map_blocks(_poison, dtype=ds.x.dtype))
    r = run(ds, [{"drop_missing": {}}], tmp_path, cache)
    assert r.counts == {"all": 27}


def _poison(block):
    out = block.copy()
    out[0, 0, 0] = np.nan
    return out


def test_deduplicate_and_clip(tmp_path, hybridnb_home, cache):
    f = small()
    f = pd.concat([f, f.iloc[:5]], ignore_index=True)
    f.loc[3, "a"] = 1e6
    f.loc[40 + 3, "a"] = 1e6
    ds = table(tmp_path, f, parts=3)
    r = run(ds, [{"deduplicate": {}}, {"clip_outliers": {"lower": -10, "upper": 10}}],
            tmp_path, cache)
    out = frame_of(r)
    assert len(out) == 40 and out["a"].max() == 10
    r = run(ds, [{"clip_outliers": {"sigma": 2, "columns": ["a"]}}], tmp_path, cache)
    bounds = r.manifest["steps"][0]["statistics"]["bounds"]["a"]
    assert bounds[1] == pytest.approx(f["a"].mean() + 2 * f["a"].std())
    assert frame_of(r)["a"].max() == pytest.approx(bounds[1])
    with pytest.raises(UsageError, match="works on table datasets"):
        run(synthetic_images(10, (2, 2)), [{"deduplicate": {}}], tmp_path, cache)


def test_check_schema(tmp_path, hybridnb_home, cache):
    ds = table(tmp_path, small())
    run(ds, [CheckSchema(columns={"a": "float", "label": "int"})], tmp_path, cache)
    with pytest.raises(UsageError, match=r"column 'label' of dataset .* is int64, expected float"):
        run(ds, [{"check_schema": {"columns": {"label": "float"}}}], tmp_path, cache)
    with pytest.raises(UsageError, match=r"column 'c' \(did you mean 'a'\?\)|column 'c'"):
        run(ds, [{"check_schema": {"columns": {"c": "float"}}}], tmp_path, cache)
    with pytest.raises(UsageError, match="unexpected column 'b'"):
        run(ds, [{"check_schema": {"columns": {"a": "float", "label": "int"}, "extra": False}}],
            tmp_path, cache)
    r = run(ds, [{"check_schema": {"columns": {"label": "float32"}, "cast": True}}],
            tmp_path, cache)
    assert frame_of(r)["label"].dtype == np.float32


@pytest.mark.parametrize("kind", ["standard_scale", "min_max_scale"])
def test_scaling_statistics_and_serving_transform(kind, tmp_path, hybridnb_home, cache):
    f = small(100)
    ds = table(tmp_path, f, parts=4)
    r = run(ds, [{kind: {}}], tmp_path, cache)
    stats = r.manifest["steps"][0]["statistics"]["columns"]
    assert stats["a"]["mean"] == pytest.approx(f["a"].mean())
    assert stats["b"]["std"] == pytest.approx(f["b"].std())
    assert stats["a"]["min"] == f["a"].min() and stats["a"]["count"] == 100
    out = frame_of(r)
    if kind == "standard_scale":
        assert out["a"].mean() == pytest.approx(0, abs=1e-9)
        assert out["b"].std() == pytest.approx(1)
    else:
        assert out["a"].min() == 0 and out["a"].max() == pytest.approx(1)
    assert (out["label"] == f["label"]).all()  # the target is not scaled
    # serving applies the very same transform
    pd.testing.assert_frame_equal(transform(r.path, f), out, check_dtype=False)


def test_scaling_tensors_and_serving(tmp_path, hybridnb_home, cache):
    ds = synthetic_images(60, (4, 4), classes=2, chunk_rows=25)
    r = run(ds, [{"standard_scale": {}}], tmp_path, cache)
    x = np.concatenate([np.load(p) for p in sorted((r.path / "all").glob("x-*.npy"))])
    raw = ds.x.compute()
    assert abs(x.mean()) < 1e-5 and x.std() == pytest.approx(1, rel=1e-4)
    np.testing.assert_allclose(transform(r.manifest, raw), x, rtol=1e-5, atol=1e-6)


def test_all_nan_column_is_named(tmp_path, hybridnb_home, cache):
    f = small()
    f["b"] = np.nan
    ds = table(tmp_path, f)
    with pytest.raises(UsageError, match=r"step 'standard_scale': column 'b' has no values"):
        run(ds, [{"standard_scale": {}}], tmp_path, cache)
    # no statistics step: caught when writing, and nothing is left behind
    with pytest.raises(UsageError, match=r"column 'b' of dataset .* is all NaN"):
        run(ds, [{"split": {}}], tmp_path, cache)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_split_is_deterministic_and_stratified(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(3000, 2, seed=0, partitions=3)
    r1 = run(ds, [{"split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 7}}],
             tmp_path, cache)
    counts = r1.counts
    assert sum(counts.values()) == 3000
    assert counts["train"] == pytest.approx(1800, abs=6)
    train = frame_of(r1, "train")
    full = ds.frame.compute()
    # each class keeps its share
    for cls, n in full["label"].value_counts().items():
        assert (train["label"] == cls).sum() == pytest.approx(0.6 * n, abs=3)
    first = {s["files"]["data"]: s["sha256"]["data"] for s in r1.manifest["shards"]}
    r2 = run(ds, [{"split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 7}}],
             tmp_path, cache, )
    assert r2.summary.status.startswith("up to date")
    codes = assign_splits(np.arange(100) % 3, (0.5, 0.5, 0.0), seed=1, index=0)
    np.testing.assert_array_equal(codes, assign_splits(np.arange(100) % 3, (0.5, 0.5, 0.0),
                                                       seed=1, index=0))
    assert first
    with pytest.raises(UsageError, match="must be 1"):
        make_step("split", {"train": 0.9, "validation": 0.2, "test": 0.0})


def test_table_noise_only_touches_train_rows(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(400, 2, seed=0, partitions=2)
    base = run(ds, [{"split": {}}], tmp_path, cache)
    clean = {s: frame_of(base, s) for s in base.counts}
    r = run(ds, [{"split": {}}, {"table_noise": {"std": 0.5, "seed": 3}}], tmp_path, cache)
    noisy = {s: frame_of(r, s) for s in r.counts}
    assert not np.allclose(noisy["train"]["f0"], clean["train"]["f0"])
    pd.testing.assert_frame_equal(noisy["test"], clean["test"])


def test_augment_changes_train_only_and_copies(tmp_path, hybridnb_home, cache):
    ds = synthetic_images(80, (6, 6), classes=2, chunk_rows=30)
    steps = [{"split": {"seed": 1}}]
    base = run(ds, steps, tmp_path, cache)
    aug = run(ds, [*steps, {"augment": {"shift": 1, "rotate": 15, "flip": True,
                                        "noise": 0.1, "seed": 2}}], tmp_path, cache)
    assert aug.counts == base.counts
    sha = {s["files"]["x"]: s["sha256"]["x"] for s in base.manifest["shards"]}
    sha2 = {s["files"]["x"]: s["sha256"]["x"] for s in aug.manifest["shards"]}
    assert all(sha[k] == sha2[k] for k in sha if not k.startswith("train"))
    assert all(sha[k] != sha2[k] for k in sha if k.startswith("train"))
    copies = run(ds, [*steps, {"augment": {"noise": 0.1, "copies": 2}}], tmp_path, cache)
    assert copies.counts["train"] == 3 * base.counts["train"]
    assert copies.counts["test"] == base.counts["test"]
    with pytest.raises(UsageError, match="needs images"):
        run(synthetic_images(10, (4,)), [{"augment": {}}], tmp_path, cache)


def test_user_function_steps(tmp_path, hybridnb_home, cache):
    def add_ratio(df, k=1.0):
        return df.assign(ratio=df["a"] / k)

    def negate(block):
        return -block

    ds = synthetic_table(100, 2, seed=0, partitions=2)
    ds = ds.evolve(frame=ds.frame.rename(columns={"f0": "a"}))
    r = run(ds, [{"split": {}}, add_ratio], tmp_path, cache)
    out = frame_of(r)
    np.testing.assert_allclose(out["ratio"], out["a"])
    images = synthetic_images(20, (2, 2), chunk_rows=10)
    r = run(images, [negate], tmp_path, cache)
    x = np.concatenate([np.load(p) for p in sorted((r.path / "all").glob("x-*.npy"))])
    np.testing.assert_allclose(x, -images.x.compute())
    loader = ShardLoader(r.path, split="all", batch_size=8)
    assert len(loader) == 3


def test_unknown_steps_and_parameters_did_you_mean():
    with pytest.raises(UsageError, match=r"unknown step 'standard_scal' \(did you mean "
                                         r"'standard_scale'\?\)"):
        Pipeline([{"standard_scal": {}}])
    with pytest.raises(UsageError, match=r"step 'split': unknown parameter 'trian' \(did you "
                                         r"mean 'train'\?\)"):
        Pipeline([{"split": {"trian": 0.5}}])
    with pytest.raises(UsageError, match=r"column 'f9' \(did you mean 'f0'\?\)|column 'f9'"):
        Pipeline([{"standard_scale": {"columns": ["f9"]}}]).run(
            synthetic_table(10, 1), out="/nonexistent/never", progress=False)
