"""Cleaning steps: drop or fill missing values, deduplicate, clip outliers, check schema.

Statistics (means, standard deviations) are fit in one distributed pass; see
:mod:`hybridnb.data.moments`.

>>> DropMissing(how="all")
DropMissing(columns=None, how='all')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import UsageError, did_you_mean
from .dask_dataset import DROPPED, DaskDataset
from .moments import table_moments
from .steps import Compute, Step, StepContext, require_values


@dataclass(frozen=True)
class DropMissing(Step):
    """Drop samples with missing values (``how="any"``) or only missing (``"all"``).

    >>> DropMissing(columns=["age"]).params()
    {'columns': ['age'], 'how': 'any'}
    """

    name: ClassVar[str] = "drop_missing"
    changes_rows: ClassVar[bool] = True
    columns: list[str] | None = None
    how: str = "any"

    def __post_init__(self) -> None:
        if self.how not in ("any", "all"):
            raise UsageError(f"step 'drop_missing': how={self.how!r}; use 'any' or 'all'")

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        if ds.kind == "table":
            cols = self._columns(ds, self.columns, ds.columns)
            return ds.evolve(frame=ds.frame.dropna(subset=cols, how=self.how))
        import dask.array as da
        import numpy as np

        axes = tuple(range(1, ds.x.ndim))
        nan = da.isnan(ds.x)
        bad = (nan.any(axis=axes) if self.how == "any" else nan.all(axis=axes)) if axes else nan
        base = ds.mask if ds.mask is not None else da.full(ds.x.shape[0], 3, dtype=np.int8,
                                                           chunks=(ds.x.chunks[0],))
        return ds.evolve(mask=da.where(bad, np.int8(DROPPED), base).astype(np.int8))


@dataclass(frozen=True)
class FillMissing(Step):
    """Fill missing values with a ``constant`` or each column's ``mean`` (fit in one pass).

    >>> FillMissing(strategy="constant", value=0.0).fits
    True
    """

    name: ClassVar[str] = "fill_missing"
    fits: ClassVar[bool] = True
    strategy: str = "mean"
    value: float | None = None
    columns: list[str] | None = None

    def __post_init__(self) -> None:
        if self.strategy not in ("mean", "constant"):
            raise UsageError(f"step 'fill_missing': strategy={self.strategy!r}; use 'mean' "
                             "or 'constant'")
        if self.strategy == "constant" and self.value is None:
            raise UsageError("step 'fill_missing': strategy 'constant' needs value=")

    @property
    def learns(self) -> bool:
        return self.strategy == "mean"

    def fit(self, ds: DaskDataset, compute: Compute) -> dict[str, Any]:
        if self.strategy == "constant":
            return {"fill": ({c: self.value for c in self._columns(ds, self.columns)}
                             if ds.kind == "table" else self.value)}
        if ds.kind == "table":
            cols = self._columns(ds, self.columns)
            m = table_moments(ds.frame, cols, compute)
            require_values(self.name, {}, {c: m[c]["count"] for c in cols})
            return {"fill": {c: m[c]["mean"] for c in cols}}
        import dask.array as da

        mean, count = compute(da.nanmean(ds.x), (~da.isnan(ds.x)).sum())
        require_values(self.name, {}, {"x": count})
        return {"fill": float(mean)}

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        if ds.kind == "table":
            return ds.evolve(frame=ds.frame.fillna(stats["fill"]))
        import dask.array as da

        return ds.evolve(x=da.where(da.isnan(ds.x), ds.x.dtype.type(stats["fill"]), ds.x))


@dataclass(frozen=True)
class Deduplicate(Step):
    """Drop repeated rows (of ``columns``, default all); a P2P shuffle on a cluster.

    Its output is checkpointed by default (``checkpoint=False`` to skip): a shuffle costs
    more than writing its result and reading it back, which later fits and reruns do.

    >>> Deduplicate().kinds, Deduplicate().checkpointed
    (('table',), True)
    """

    name: ClassVar[str] = "deduplicate"
    changes_rows: ClassVar[bool] = True
    checkpoint_by_default: ClassVar[bool] = True
    kinds: ClassVar[tuple[str, ...]] = ("table",)
    columns: list[str] | None = None
    keep: str = "first"

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        cols = self._columns(ds, self.columns, ds.columns)
        frame = ds.frame.drop_duplicates(subset=cols, keep=self.keep,
                                         split_out=ds.frame.npartitions,
                                         shuffle_method=ctx.shuffle_method)
        return ds.evolve(frame=frame)


@dataclass(frozen=True)
class ClipOutliers(Step):
    """Clip values to ``[lower, upper]``, or to mean ± ``sigma`` standard deviations.

    >>> ClipOutliers(lower=0, upper=1).fits
    True
    """

    name: ClassVar[str] = "clip_outliers"
    fits: ClassVar[bool] = True
    sigma: float | None = 4.0
    lower: float | None = None
    upper: float | None = None
    columns: list[str] | None = None

    @property
    def learns(self) -> bool:
        return self.sigma is not None and self.lower is None and self.upper is None

    def fit(self, ds: DaskDataset, compute: Compute) -> dict[str, Any]:
        if not self.learns or self.sigma is None:  # (the second test: for type checkers)
            bounds = [self.lower, self.upper]
            if ds.kind == "table":
                return {"bounds": {c: bounds for c in self._columns(ds, self.columns)}}
            return {"bounds": bounds}
        if ds.kind == "table":
            cols = self._columns(ds, self.columns)
            m = table_moments(ds.frame, cols, compute)
            require_values(self.name, {}, {c: m[c]["count"] for c in cols})
            return {"bounds": {c: [m[c]["mean"] - self.sigma * _finite(m[c]["std"]),
                                   m[c]["mean"] + self.sigma * _finite(m[c]["std"])]
                               for c in cols}}
        import dask.array as da

        mean, std, count = compute(da.nanmean(ds.x), da.nanstd(ds.x), (~da.isnan(ds.x)).sum())
        require_values(self.name, {}, {"x": count})
        return {"bounds": [float(mean - self.sigma * std), float(mean + self.sigma * std)]}

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        if ds.kind == "table":
            bounds = stats["bounds"]
            frame = ds.frame.assign(**{c: ds.frame[c].clip(lo, hi)
                                       for c, (lo, hi) in bounds.items()})
            return ds.evolve(frame=frame)
        lo, hi = stats["bounds"]
        return ds.evolve(x=ds.x.clip(lo, hi))


def _finite(value: Any) -> float:
    import math

    v = float(value)
    return 0.0 if math.isnan(v) else v


#: Accepted type families in ``check_schema`` besides exact dtype names.
FAMILIES = {"float": "f", "int": "iu", "integer": "iu", "bool": "b", "numeric": "iuf",
            "string": "OUS", "str": "OUS"}


@dataclass(frozen=True)
class CheckSchema(Step):
    """Check columns and types before any work: ``columns={"age": "float", …}``.

    Types are exact dtype names (``"float32"``) or families (``float``, ``int``, ``bool``,
    ``numeric``, ``string``). ``extra=False`` rejects columns not listed; ``cast=True``
    converts columns to the exact dtypes given instead of failing.

    >>> CheckSchema(columns={"f0": "float"}).params()
    {'columns': {'f0': 'float'}, 'extra': True, 'cast': False}
    """

    name: ClassVar[str] = "check_schema"
    kinds: ClassVar[tuple[str, ...]] = ("table",)
    columns: dict[str, str] = field(default_factory=dict)
    extra: bool = True
    cast: bool = False

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        import numpy as np

        frame = ds.frame
        casts = {}
        for col, want in self.columns.items():
            if col not in ds.columns:
                raise UsageError(f"step 'check_schema': column '{col}'"
                                 f"{did_you_mean(col, ds.columns)} is missing from dataset "
                                 f"{ds.name!r}; columns: {', '.join(ds.columns)}")
            have = frame.dtypes[col]
            kind = getattr(have, "kind", "O")
            ok = (kind in FAMILIES[want]) if want in FAMILIES else str(have) == want
            if not ok:
                if self.cast and want not in FAMILIES:
                    casts[col] = np.dtype(want)
                    continue
                raise UsageError(f"step 'check_schema': column '{col}' of dataset "
                                 f"{ds.name!r} is {have}, expected {want}")
        if not self.extra:
            extra = [c for c in ds.columns if c not in self.columns]
            if extra:
                raise UsageError(f"step 'check_schema': unexpected column '{extra[0]}' in "
                                 f"dataset {ds.name!r} (extra=False)")
        return ds.evolve(frame=frame.astype(casts)) if casts else ds
