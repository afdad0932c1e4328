"""Column statistics of a table in one pass: count, mean, standard deviation, min, max.

Each partition reduces to a few numbers per column (its count, mean, sum of squared
deviations, min and max) in one task; the driver merges them with Chan's parallel
formula. One small task per partition costs far less than dask's five separate
reductions (each with its own chunk and aggregate tasks) and keeps the variance
numerically stable (no sum of squares minus squared sum).

>>> import pandas as pd
>>> part = pd.DataFrame({"a": [1.0, 2.0, None], "b": [4, 5, 6]})
>>> partition_moments(part, ["a", "b"])["count"].tolist()
[2, 3]
>>> merge_moments(partition_moments(part, ["a"]))["a"]["mean"]
1.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: The columns of :func:`partition_moments`' result, one row per input column.
FIELDS = ("count", "mean", "m2", "min", "max")


def partition_moments(part: Any, columns: Sequence[str]) -> Any:
    """Count, mean, sum of squared deviations, min and max of ``columns`` (NaN skipped).

    Returns a pandas DataFrame indexed by column name, one row per column.
    """
    import pandas as pd

    sub = part[list(columns)].astype("float64")
    count = sub.count()
    # An all-NaN column has no mean: NaN, which merge_moments skips with its zero count.
    mean = sub.sum() / count.where(count > 0)
    m2 = ((sub - mean) ** 2).sum()
    return pd.DataFrame({"count": count.astype("int64"), "mean": mean, "m2": m2,
                         "min": sub.min(), "max": sub.max()}, index=list(columns))


def moments_meta(columns: Sequence[str]) -> Any:
    """The empty frame :func:`partition_moments` returns (dask's ``meta``)."""
    import pandas as pd

    return partition_moments(pd.DataFrame({c: pd.Series([], dtype="float64")
                                           for c in columns}), columns)


def merge_moments(parts: Any) -> dict[str, dict[str, float]]:
    """Merge per-partition moments into ``{column: {count, mean, std, min, max}}``.

    ``std`` is the sample standard deviation (``ddof=1``, as pandas), NaN with fewer
    than two values; ``mean``, ``min`` and ``max`` are NaN for a column without values.
    """
    out: dict[str, dict[str, float]] = {}
    for col, rows in parts.groupby(level=0, sort=False):
        rows = rows[rows["count"] > 0]
        n = int(rows["count"].sum())
        if n == 0:
            out[str(col)] = {"count": 0, "mean": math.nan, "std": math.nan,
                             "min": math.nan, "max": math.nan}
            continue
        counts = rows["count"].to_numpy(dtype="float64")
        means = rows["mean"].to_numpy()
        mean = float((counts * means).sum() / n)
        m2 = float(rows["m2"].sum() + (counts * (means - mean) ** 2).sum())
        out[str(col)] = {"count": n, "mean": mean,
                         "std": math.sqrt(m2 / (n - 1)) if n > 1 else math.nan,
                         "min": float(rows["min"].min()), "max": float(rows["max"].max())}
    return out


def table_moments(frame: Any, columns: Sequence[str], compute: Any) -> dict[str, dict[str, float]]:
    """:func:`merge_moments` of a dask DataFrame's ``columns``, computed by ``compute``.

    ``compute`` computes dask objects in one pass (the pipeline's runner, which may add
    other work to the same pass, such as row counts).

    >>> import dask, dask.dataframe as dd, pandas as pd
    >>> frame = dd.from_pandas(pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]}), npartitions=2)
    >>> table_moments(frame, ["a"], dask.compute)["a"]["std"]  # doctest: +ELLIPSIS
    1.29099...
    """
    cols = list(columns)
    if not cols:
        return {}
    parts = frame.map_partitions(partition_moments, cols, meta=moments_meta(cols),
                                 enforce_metadata=False)
    (computed,) = compute(parts)
    return merge_moments(computed)
