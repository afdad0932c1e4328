"""The Dask-backed dataset every reader returns and every pipeline step transforms.

A :class:`DaskDataset` is either a *table* (a ``dask.dataframe.DataFrame``, optionally
with a target column) or a *tensor* dataset (``x``, a ``dask.array`` of samples chunked
along the first axis only, and ``y``, one label per sample). It also knows where the data
lives and how sensitive it is (its configured ``site`` and ``classification``), and a
``fingerprint`` of its source, from which the pipeline's cache keys derive.

Splits are codes, never separate collections, so that one streaming pass writes every
split: tables carry an ``int8`` column :data:`SPLIT_COLUMN`, tensor datasets an ``int8``
array ``mask`` aligned with ``x``. Code ``-1`` marks a sample a step dropped without
changing chunk sizes (dask arrays keep known shapes that way).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from html import escape
from typing import Any, Literal

#: Split names, by code. ``all`` is the code of samples no split step has assigned.
SPLITS = ("train", "validation", "test", "all")
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}
DROPPED = -1
#: The column that carries split codes in tables (removed when shards are written).
SPLIT_COLUMN = "_split"

Kind = Literal["table", "tensor"]


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts``.

    >>> fingerprint("digits", 1) == fingerprint("digits", 1)
    True
    """
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class DaskDataset:
    """A dataset backed by Dask collections, with its residency and source identity.

    Build one with :func:`hybridnb.data.load`, a reader (``read_parquet``, ``read_npy``,
    …) or a generator (``synthetic_table``, ``synthetic_images``). Steps return new
    datasets (``dataclasses.replace``); nothing is computed until a pipeline runs.

    Examples
    --------
    >>> from hybridnb.data import load
    >>> ds = load("digits")
    >>> ds.kind, ds.classification, ds.site
    ('tensor', 'public', 'local')
    """

    name: str
    kind: Kind
    site: str = "local"
    classification: str = "public"
    fingerprint: str = ""
    source: str = ""
    frame: Any = None          # dask.dataframe.DataFrame (tables)
    target: str | None = None  # label column of a table
    x: Any = None              # dask.array.Array (tensors), chunked along axis 0 only
    y: Any = None              # dask.array.Array of labels, same chunks as x
    mask: Any = None           # dask.array.Array of split codes, or None: all "all"
    rows: int | None = None    # a table's row count when known without work (file metadata)

    def evolve(self, **changes: Any) -> DaskDataset:
        """A copy with ``changes`` (steps never mutate their input).

        A new frame forgets the known row count unless ``rows=`` comes with it: a step
        may have dropped rows.
        """
        if "frame" in changes:
            changes.setdefault("rows", None)
        return replace(self, **changes)

    @property
    def columns(self) -> list[str]:
        """Feature and target columns of a table (without the split column)."""
        if self.frame is None:
            return []
        return [c for c in self.frame.columns if c != SPLIT_COLUMN]

    @property
    def feature_columns(self) -> list[str]:
        """Numeric columns other than the target (what scaling steps touch by default)."""
        if self.frame is None:
            return []
        import pandas as pd

        dtypes = self.frame.dtypes
        return [c for c in self.columns
                if c != self.target and pd.api.types.is_numeric_dtype(dtypes[c])
                and not pd.api.types.is_bool_dtype(dtypes[c])]

    @property
    def npartitions(self) -> int:
        if self.frame is not None:
            return int(self.frame.npartitions)
        return len(self.x.chunks[0])

    def count(self) -> Any:
        """Samples kept, lazily (a dask scalar) or an ``int`` when known without work."""
        if self.kind == "table":
            if self.rows is not None:
                return self.rows
            return self.frame.map_partitions(len, meta=(None, "int64")).sum()
        if self.mask is None:
            return int(self.x.shape[0])
        return (self.mask >= 0).sum()

    def fit_view(self, split: bool) -> tuple[DaskDataset, Any]:
        """The rows statistics may be fit on, and their number (lazily).

        ``split``: whether a split step has assigned codes; then only the ``train``
        split counts, else every sample a step has not dropped. Tables get a filtered
        frame. Tensors keep their chunks (NaN-aware reductions refuse unknown chunk
        sizes): the other samples' values become NaN, which those reductions skip.

        >>> import dask.array as da, numpy as np
        >>> ds = DaskDataset("t", "tensor", x=da.arange(4.0, chunks=2), y=da.zeros(4, chunks=2),
        ...                  mask=da.from_array(np.array([0, 2, 0, -1], dtype=np.int8), chunks=2))
        >>> view, rows = ds.fit_view(split=True)
        >>> int(rows.compute()), float(da.nanmean(view.x).compute())
        (2, 1.0)
        """
        import numpy as np

        if self.kind == "table":
            if split and SPLIT_COLUMN in self.frame.columns:
                view = self.evolve(frame=self.frame[self.frame[SPLIT_COLUMN]
                                                    == SPLIT_CODES["train"]])
                return view, view.count()
            return self, self.count()
        if self.mask is None:
            return self, int(self.x.shape[0])
        keep = self.mask == SPLIT_CODES["train"] if split else self.mask >= 0
        wide = keep.reshape((keep.shape[0],) + (1,) * (self.x.ndim - 1))
        x = self.x if self.x.dtype.kind == "f" else self.x.astype(np.float64)
        import dask.array as da

        return self.evolve(x=da.where(wide, x, x.dtype.type(np.nan))), keep.sum()

    def describe(self) -> dict[str, Any]:
        """Schema: columns and dtypes of a table, or shape and dtype of tensors."""
        if self.kind == "table":
            return {"kind": "table", "target": self.target,
                    "columns": {c: str(self.frame.dtypes[c]) for c in self.columns}}
        return {"kind": "tensor", "x": {"shape": list(self.x.shape[1:]),
                                        "dtype": str(self.x.dtype)},
                "y": {"dtype": str(self.y.dtype)} if self.y is not None else None}

    def __repr__(self) -> str:
        if self.kind == "table":
            body = f"{len(self.columns)} columns, {self.npartitions} partitions"
        else:
            body = f"x{tuple(self.x.shape)} {self.x.dtype}, {self.npartitions} chunks"
        return (f"<DaskDataset {self.name!r} ({self.kind}: {body}) on {self.site}, "
                f"{self.classification}>")

    def _repr_html_(self) -> str:
        schema = self.describe()
        if self.kind == "table":
            rows = "".join(f"<tr><td>{escape(c)}</td><td>{escape(t)}</td></tr>"
                           for c, t in schema["columns"].items())
            detail = f"<table><tr><th>column</th><th>dtype</th></tr>{rows}</table>"
        else:
            detail = (f"<p>x: {tuple(self.x.shape)} {escape(str(self.x.dtype))}; "
                      f"y: {escape(str(getattr(self.y, 'dtype', None)))}</p>")
        return (f"<div><b>DaskDataset {escape(self.name)}</b> ({self.kind}) — site "
                f"{escape(self.site)}, classification {escape(self.classification)}, "
                f"{self.npartitions} partitions<br><small>{escape(self.source)}</small>"
                f"{detail}</div>")
