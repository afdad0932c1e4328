"""Datasets: built-ins, generators, readers, residency, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridnb.config import load_config
from hybridnb.data import (
    digits,
    load,
    read_csv,
    read_images,
    read_npy,
    read_parquet,
    read_zarr,
    synthetic_images,
    synthetic_table,
)
from hybridnb.errors import UsageError


def test_digits_is_dask_backed_public_and_local(hybridnb_home):
    ds = load("digits")
    assert ds.kind == "tensor" and ds.x.shape == (1797, 8, 8)
    assert (ds.site, ds.classification) == ("local", "public")
    assert int(ds.y.max().compute()) == 9
    assert "digits" in repr(ds) and "<b>DaskDataset" in ds._repr_html_()


def test_configured_builtin_takes_the_configured_residency(hybridnb_home):
    config = load_config(overrides={"datasets": {"digits": {
        "site": "local", "path": "digits", "format": "builtin", "classification": "pii"}}})
    ds = load("digits", config=config)
    assert ds.classification == "pii"


def test_unknown_dataset_did_you_mean(hybridnb_home):
    with pytest.raises(UsageError, match=r"unknown dataset 'digit' \(did you mean 'digits'\?\)"):
        load("digit")


def test_generators_are_deterministic_by_seed():
    a = synthetic_images(50, (6, 6), classes=3, seed=1, chunk_rows=20)
    b = synthetic_images(50, (6, 6), classes=3, seed=1, chunk_rows=20)
    c = synthetic_images(50, (6, 6), classes=3, seed=2, chunk_rows=20)
    np.testing.assert_array_equal(a.x.compute(), b.x.compute())
    assert not np.array_equal(a.x.compute(), c.x.compute())
    assert a.fingerprint == b.fingerprint != c.fingerprint
    t = synthetic_table(1000, 3, seed=0, partitions=3, missing=0.1)
    frame = t.frame.compute()
    assert len(frame) == 1000 and list(frame.columns) == ["f0", "f1", "f2", "label"]
    assert 0.05 < frame["f0"].isna().mean() < 0.15
    pd.testing.assert_frame_equal(frame, synthetic_table(1000, 3, seed=0, partitions=3,
                                                         missing=0.1).frame.compute())


def _frame(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                         "label": rng.integers(0, 2, n)})


def test_read_parquet_and_configured_dataset(tmp_path, hybridnb_home):
    for i in range(2):
        _frame(seed=i).to_parquet(tmp_path / f"p{i}.parquet")
    ds = read_parquet(tmp_path / "p*.parquet", target="label", classification="pii")
    assert ds.kind == "table" and len(ds.frame.compute()) == 40
    assert ds.feature_columns == ["a", "b"]
    config = load_config(overrides={"datasets": {"patients": {
        "site": "local", "path": str(tmp_path), "format": "parquet",
        "classification": "pii"}}})
    ds = load("patients", config=config, target="label")
    assert (ds.name, ds.site, ds.classification) == ("patients", "local", "pii")


def test_read_csv_npy_zarr_images(tmp_path):
    _frame().to_csv(tmp_path / "a.csv", index=False)
    _frame(seed=1).to_csv(tmp_path / "b.csv", index=False)
    assert len(read_csv([tmp_path / "a.csv", tmp_path / "b.csv"]).frame.compute()) == 40
    x = np.arange(60, dtype=np.float32).reshape(15, 2, 2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(15))
    ds = read_npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=4)
    np.testing.assert_array_equal(ds.x.compute(), x)
    assert ds.x.chunks[0] == (4, 4, 4, 3)
    import zarr

    group = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    group.create_array("x", data=x, chunks=(5, 2, 2))
    group.create_array("y", data=np.arange(15), chunks=(5,))
    ds = read_zarr(tmp_path / "d.zarr")
    np.testing.assert_array_equal(ds.x.compute(), x)
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 5), i, np.uint8)).save(tmp_path / "img" / cls / f"{i}.png")
    ds = read_images(tmp_path / "img", chunk_rows=4)
    assert ds.x.shape == (6, 4, 5) and list(ds.y.compute()) == [0, 0, 0, 1, 1, 1]


def test_missing_files_are_named(tmp_path):
    with pytest.raises(UsageError, match=r"file not found: .*nope\.parquet"):
        read_parquet(tmp_path / "nope.parquet")
    with pytest.raises(UsageError, match="no file matches"):
        read_csv(str(tmp_path / "*.csv"))
    with pytest.raises(UsageError, match="file not found"):
        read_npy(tmp_path / "x.npy")
    with pytest.raises(UsageError, match="image folder not found"):
        read_images(tmp_path / "none")


def test_schema_mismatch_names_files_and_column(tmp_path):
    _frame().to_parquet(tmp_path / "p0.parquet")
    _frame().rename(columns={"b": "c"}).to_parquet(tmp_path / "p1.parquet")
    with pytest.raises(UsageError, match=r"column 'b' is in .*p0.parquet' but not in .*p1"):
        read_parquet(tmp_path)
    _frame().astype({"a": "float32"}).to_parquet(tmp_path / "p1.parquet")
    with pytest.raises(UsageError, match=r"column 'a' is double in .*p0.* but float in .*p1"):
        read_parquet(tmp_path)
    _frame().to_csv(tmp_path / "a.csv", index=False)
    _frame()[["b", "a", "label"]].to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(UsageError, match=r"schema mismatch: header of .*b.csv"):
        read_csv(tmp_path)


def test_empty_datasets_are_errors(tmp_path):
    _frame().iloc[:0].to_parquet(tmp_path / "e.parquet")
    with pytest.raises(UsageError, match="dataset is empty"):
        read_parquet(tmp_path / "e.parquet")
    (tmp_path / "e.csv").write_text("a,b\n")
    with pytest.raises(UsageError, match="dataset is empty"):
        read_csv(tmp_path / "e.csv")
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    with pytest.raises(UsageError, match="dataset is empty"):
        read_npy(tmp_path / "e.npy")
    with pytest.raises(UsageError, match="at least one sample"):
        synthetic_images(0)


def test_target_column_must_exist(tmp_path):
    _frame().to_parquet(tmp_path / "p.parquet")
    with pytest.raises(UsageError, match=r"column 'lable' \(did you mean 'label'\?\)"):
        read_parquet(tmp_path / "p.parquet", target="lable")


def test_digits_chunking():
    assert digits(chunk_rows=1000).npartitions == 2
