"""Statistics are fit on the training split only, and the manifest says so.

The data are built so that the held-out rows differ strongly from the training rows:
statistics that saw them (as every fit did before) are far from the training rows' own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridnb.data import Pipeline, load_pipeline, read_npy, read_parquet, synthetic_images
from hybridnb.errors import UsageError

from .test_steps import frame_of

SPLIT = {"split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 3}}


def _write(frame: pd.DataFrame, root, parts: int = 3):
    root.mkdir()
    n = len(frame)
    for i in range(parts):
        frame.iloc[i * n // parts:(i + 1) * n // parts].to_parquet(root / f"in{i}.parquet")
    return read_parquet(sorted(root.glob("in*.parquet")), target="label")


@pytest.fixture
def skewed(tmp_path, hybridnb_home):
    """A table whose validation and test rows sit far from its training rows.

    A first run with the split alone tells which rows the split sends where (it depends
    on the labels, the partitions and the seed only); the same rows, same files, then
    get feature values by split.
    """
    rng = np.random.default_rng(0)
    n = 300
    base = pd.DataFrame({"id": np.arange(n, dtype="int64"), "a": 0.0, "b": 0.0,
                         "label": np.arange(n) % 3})
    probe = Pipeline([SPLIT]).run(_write(base, tmp_path / "probe"), out=tmp_path / "p",
                                  cache_dir=tmp_path / "c", progress=False)
    train_ids = set(frame_of(probe, "train")["id"])
    held_out = ~base["id"].isin(train_ids)
    frame = base.assign(a=rng.normal(0.0, 1.0, n) + np.where(held_out, 1000.0, 0.0),
                        b=rng.uniform(-1.0, 1.0, n) * np.where(held_out, 50.0, 1.0))
    return frame, train_ids, _write(frame, tmp_path / "skewed")


@pytest.mark.parametrize("kind", ["standard_scale", "min_max_scale"])
def test_table_statistics_are_the_train_rows_own(kind, skewed, tmp_path, cache):
    frame, train_ids, ds = skewed
    r = Pipeline([SPLIT, {kind: {"columns": ["a", "b"]}}]).run(
        ds, out=tmp_path / "out", cache_dir=cache, progress=False)
    train = frame[frame["id"].isin(train_ids)]
    assert len(train) == r.counts["train"] and r.counts["train"] < len(frame)
    step = r.manifest["steps"][1]
    stats = step["statistics"]["columns"]
    for col in ("a", "b"):
        assert stats[col]["min"] == train[col].min() and stats[col]["max"] == train[col].max()
        assert stats[col]["mean"] == pytest.approx(train[col].mean(), rel=1e-12, abs=1e-12)
        assert stats[col]["std"] == pytest.approx(train[col].std(), rel=1e-12)
        assert stats[col]["count"] == len(train)
    assert abs(stats["a"]["mean"]) < 1.0 < abs(frame["a"].mean())  # far from all rows' mean
    assert step["fit_on"] == {"split": "train", "rows": len(train)}

    # The held-out shards are transformed with the training statistics.
    for split in ("test", "validation"):
        out = frame_of(r, split).set_index("id").sort_index()
        raw = frame.set_index("id").loc[out.index]
        for col in ("a", "b"):
            s = stats[col]
            shift, scale = ((s["mean"], s["std"]) if kind == "standard_scale"
                            else (s["min"], s["max"] - s["min"]))
            np.testing.assert_allclose(out[col], (raw[col] - shift) / scale, rtol=1e-12)
        assert out["a"].min() > 100  # far outside the training rows' range: nothing refit


def test_tensor_statistics_are_the_train_rows_own(tmp_path, hybridnb_home, cache):
    # A probe whose images hold their own index tells where the split sends each one.
    n, labels = 400, np.arange(400) % 4
    np.save(tmp_path / "y.npy", labels)
    np.save(tmp_path / "probe.npy", np.repeat(np.arange(n, dtype=np.float32), 16).reshape(n, 4, 4))
    probe = Pipeline([SPLIT]).run(read_npy(tmp_path / "probe.npy", tmp_path / "y.npy",
                                           chunk_rows=90),
                                  out=tmp_path / "p", cache_dir=cache, progress=False)

    def split_x(result, split):
        return np.concatenate([np.load(result.path / s["files"]["x"])
                               for s in result.manifest["shards"] if s["split"] == split])

    train_idx = split_x(probe, "train")[:, 0, 0].astype(int)
    test_idx = split_x(probe, "test")[:, 0, 0].astype(int)
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (n, 4, 4)).astype(np.float32)
    held_out = np.setdiff1d(np.arange(n), train_idx)
    x[held_out] += 1000.0
    np.save(tmp_path / "x.npy", x)
    ds = read_npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=90)
    r = Pipeline([SPLIT, {"standard_scale": {}}, {"fill_missing": {}}]).run(
        ds, out=tmp_path / "out", cache_dir=cache, progress=False)

    train = x[train_idx].astype(np.float64)
    stats = r.manifest["steps"][1]["statistics"]["x"]
    assert stats["min"] == train.min() and stats["max"] == train.max()
    assert stats["count"] == train.size == r.counts["train"] * 16
    assert stats["mean"] == pytest.approx(train.mean(), rel=1e-5, abs=1e-6)
    assert stats["std"] == pytest.approx(train.std(), rel=1e-5)
    assert stats["max"] < 100  # no held-out image contributed
    fit_on = {"split": "train", "rows": len(train_idx)}
    assert r.manifest["steps"][1]["fit_on"] == r.manifest["steps"][2]["fit_on"] == fit_on
    # The test shards hold the test images (in the split's order) scaled with those.
    np.testing.assert_allclose(split_x(r, "test"),
                               (x[test_idx] - stats["mean"]) / stats["std"], rtol=1e-5)


def test_without_a_split_statistics_come_from_every_row(tmp_path, hybridnb_home, cache):
    ds = synthetic_images(50, (2, 2), classes=2, chunk_rows=20)
    r = Pipeline([{"min_max_scale": {}}]).run(ds, out=tmp_path / "o", cache_dir=cache,
                                              progress=False)
    assert r.manifest["steps"][0]["fit_on"] == {"split": "all", "rows": 50}
    assert r.manifest["steps"][0]["statistics"]["x"]["min"] == float(ds.x.min().compute())


def test_fitting_before_the_split_is_refused_with_the_fix(tmp_path, hybridnb_home):
    with pytest.raises(UsageError) as err:
        Pipeline([{"drop_missing": {}}, {"fill_missing": {}}, {"standard_scale": {}},
                  SPLIT, {"augment": {}}])
    message = str(err.value)
    assert "'fill_missing' (step 2), 'standard_scale' (step 3) fit statistics before " \
           "'split' (step 4)" in message
    assert "validation and test rows" in message
    assert "move the split first" in message
    assert message.endswith("split → drop_missing → fill_missing → standard_scale → augment")
    # Steps that learn nothing from the rows may come first.
    Pipeline([{"fill_missing": {"strategy": "constant", "value": 0.0}},
              {"clip_outliers": {"lower": -1, "upper": 1}}, SPLIT, {"standard_scale": {}}])
    with pytest.raises(UsageError, match=r"'clip_outliers' \(step 1\) fits statistics"):
        Pipeline([{"clip_outliers": {"sigma": 3}}, SPLIT])

    f = tmp_path / "p.yaml"
    f.write_text("dataset: digits\nsteps:\n  - standard_scale: {}\n  - split: {}\n")
    with pytest.raises(UsageError, match=r"p\.yaml'.*'standard_scale' \(step 1\).*"
                                         r"move the split first"):
        load_pipeline(f)


def test_an_empty_train_split_is_named(tmp_path, hybridnb_home, cache):
    frame = pd.DataFrame({"a": np.arange(40.0), "label": np.arange(40) % 2})
    (tmp_path / "s").mkdir()
    frame.to_parquet(tmp_path / "s" / "p.parquet")
    ds = read_parquet(tmp_path / "s" / "p.parquet", target="label")
    with pytest.raises(UsageError, match=r"step 'standard_scale' of dataset .* has no rows "
                                         r"to fit its statistics on: the train split is empty"):
        Pipeline([{"split": {"train": 0.0, "validation": 0.5, "test": 0.5}},
                  {"standard_scale": {}}]).run(ds, out=tmp_path / "o", cache_dir=cache,
                                               progress=False)
