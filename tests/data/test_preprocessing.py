"""The per-row transform a prepared dataset hands to its models reproduces the pipeline.

What a bundle applies to raw rows (:func:`hybridnb.data.preprocessing.from_manifest`)
must give, row for row, what the pipeline wrote into the shards.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from hybridnb.data import Pipeline, read_npy, read_parquet, transform
from hybridnb.data.preprocessing import Preprocessing, from_manifest

from .test_steps import frame_of

SPLIT = {"split": {"seed": 1}}


def test_a_table_transform_is_the_pipelines_row_for_row(tmp_path, hybridnb_home, cache):
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"id": np.arange(n, dtype="int64"), "a": rng.normal(50, 10, n),
                          "b": rng.lognormal(3, 1, n), "c": rng.uniform(-5, 5, n),
                          "label": np.arange(n) % 2})
    frame.loc[frame.index % 7 == 0, "a"] = np.nan
    frame.loc[frame.index % 11 == 0, "b"] = np.nan
    src = tmp_path / "src"
    src.mkdir()
    frame.iloc[:200].to_parquet(src / "p0.parquet")
    frame.iloc[200:].to_parquet(src / "p1.parquet")
    ds = read_parquet(sorted(src.glob("*.parquet")), target="label")
    cols = ["a", "b", "c"]
    r = Pipeline([SPLIT, {"fill_missing": {"columns": cols}},
                  {"clip_outliers": {"sigma": 2, "columns": ["b"]}},
                  {"standard_scale": {"columns": ["a", "b"]}},
                  {"min_max_scale": {"columns": ["c"]}}]).run(
        ds, out=tmp_path / "o", cache_dir=cache, progress=False)
    pre = from_manifest(r.manifest)
    assert pre.columns == ("id", "a", "b", "c") and pre.kind == "table"
    assert [op.op for op in pre.ops] == ["fill", "clip", "scale", "scale"]
    assert pre.not_applied == ()
    # The JSON a bundle stores reads back to the same operations.
    back = Preprocessing.parse(pre.to_json(), shape=[4])
    for split in ("train", "validation", "test"):
        out = frame_of(r, split)
        raw = frame.set_index("id").loc[out["id"]].reset_index()
        for p in (pre, back):
            got = p.apply(raw[list(pre.columns)].to_numpy(dtype=np.float64))
            np.testing.assert_allclose(got, out[list(pre.columns)].to_numpy(dtype=np.float64),
                                       rtol=1e-12, atol=1e-12)
        # transform() (the DataFrame form) is the same operations
        pd.testing.assert_frame_equal(transform(r.path, raw)[out.columns], out,
                                      check_dtype=False, rtol=1e-12)


def test_a_tensor_transform_is_the_pipelines(tmp_path, hybridnb_home, cache):
    rng = np.random.default_rng(1)
    x = rng.normal(100, 30, (120, 3, 3)).astype(np.float32)
    x[::5, 0, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(120) % 3)
    ds = read_npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=50)
    r = Pipeline([{"fill_missing": {"strategy": "constant", "value": 7.0}},
                  {"clip_outliers": {"lower": 40, "upper": 160}},
                  {"min_max_scale": {}}]).run(ds, out=tmp_path / "o", cache_dir=cache,
                                              progress=False)
    pre = from_manifest(r.manifest)
    assert pre.kind == "tensor" and pre.columns is None
    out = np.concatenate([np.load(r.path / s["files"]["x"]) for s in r.manifest["shards"]])
    np.testing.assert_allclose(pre.apply(x), out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(transform(r.manifest, x), out, rtol=1e-6, atol=1e-6)


def _shout(df):
    return df


def test_user_code_is_never_carried_and_says_so(tmp_path, hybridnb_home, cache, caplog):
    frame = pd.DataFrame({"a": np.arange(20.0), "label": np.arange(20) % 2})
    (tmp_path / "s").mkdir()
    frame.to_parquet(tmp_path / "s" / "p.parquet")
    ds = read_parquet(tmp_path / "s" / "p.parquet", target="label")
    r = Pipeline([SPLIT, _shout, {"standard_scale": {}}, {"table_noise": {"std": 0.1}}]).run(
        ds, out=tmp_path / "o", cache_dir=cache, progress=False)
    with caplog.at_level(logging.WARNING, logger="hybridnb.data.preprocessing"):
        pre = from_manifest(r.manifest)
    # Augmentation and splits have nothing to do at inference; a function is code.
    assert pre.not_applied == ("_shout",) and [op.op for op in pre.ops] == ["scale"]
    assert "_shout" in caplog.text and "cannot apply" in caplog.text
    assert pre.to_json()["not_applied"] == ["_shout"]
    assert "not applied: _shout" in pre.describe()


@pytest.mark.parametrize("kind", ["standard_scale", "min_max_scale"])
def test_a_constant_column_scales_to_finite_values(kind, tmp_path, hybridnb_home, cache):
    frame = pd.DataFrame({"a": np.full(30, 4.0), "label": np.arange(30) % 2})
    (tmp_path / "s").mkdir()
    frame.to_parquet(tmp_path / "s" / "p.parquet")
    r = Pipeline([SPLIT, {kind: {}}]).run(read_parquet(tmp_path / "s" / "p.parquet",
                                                       target="label"),
                                          out=tmp_path / "o", cache_dir=cache, progress=False)
    assert np.isfinite(from_manifest(r.manifest).apply(np.array([[4.0], [5.0]]))).all()
