"""One-pass column statistics against pandas computed on the whole table."""

from __future__ import annotations

import math

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from hybridnb.data.moments import table_moments


def test_moments_match_pandas_with_nan_and_empty_partitions():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(1e6, 3.0, 997), "b": rng.integers(0, 5, 997),
                       "nan": np.nan, "one": np.where(np.arange(997) == 5, 2.0, np.nan)})
    df.loc[::7, "a"] = np.nan
    frame = dd.from_pandas(df, npartitions=9)
    frame = frame[frame["b"] >= 0]  # unknown sizes; then an empty partition
    frame = dd.concat([frame, frame.head(0, compute=False)])
    m = table_moments(frame, ["a", "b", "nan", "one"], dask.compute)
    for col in ("a", "b"):
        assert m[col]["count"] == df[col].count()
        assert m[col]["mean"] == pytest.approx(df[col].mean(), rel=1e-12)
        # a large mean does not cost precision (no sum of squares)
        assert m[col]["std"] == pytest.approx(df[col].std(), rel=1e-9)
        assert (m[col]["min"], m[col]["max"]) == (df[col].min(), df[col].max())
    assert m["nan"]["count"] == 0 and math.isnan(m["nan"]["mean"])
    assert m["one"]["count"] == 1 and m["one"]["mean"] == 2.0 and math.isnan(m["one"]["std"])
