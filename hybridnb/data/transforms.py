"""Normalisation, splitting and augmentation steps, and :func:`transform` for serving.

Scaling statistics are fit in one distributed pass, on the training split once a split
has run, and saved in the output's manifest; :func:`transform` applies the same
statistics to new data at serving time, so training and serving never disagree.

Randomness never depends on which worker runs a task: splits draw from
``(seed, partition index)``, image augmentation from ``(seed, copy, global sample
index)``. The same pipeline gives the same bytes on one worker or ten.

>>> from hybridnb.data.transforms import Split
>>> Split(train=0.8, validation=0.1, test=0.1).params()["stratify"]
True
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import UsageError
from .dask_dataset import DROPPED, SPLIT_CODES, SPLIT_COLUMN, DaskDataset
from .moments import table_moments
from .preprocessing import affine, from_manifest
from .steps import Compute, Step, StepContext, require_values

logger = logging.getLogger(__name__)


# -- scaling ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Scale(Step):
    fits: ClassVar[bool] = True
    columns: list[str] | None = None

    def fit(self, ds: DaskDataset, compute: Compute) -> dict[str, Any]:
        # min, max, mean, std and count in a single pass, one small task per partition.
        if ds.kind == "table":
            cols = self._columns(ds, self.columns)
            m = table_moments(ds.frame, cols, compute)
            require_values(self.name, {}, {c: m[c]["count"] for c in cols})
            return {"columns": {c: {"min": m[c]["min"], "max": m[c]["max"],
                                    "mean": m[c]["mean"], "std": _nz(m[c]["std"]),
                                    "count": int(m[c]["count"])} for c in cols}}
        import dask.array as da

        x = ds.x  # NaN-aware: the samples outside the fit rows hold NaN (fit_view)
        lo, hi, mean, std, count = compute(da.nanmin(x), da.nanmax(x), da.nanmean(x),
                                           da.nanstd(x), (~da.isnan(x)).sum())
        require_values(self.name, {}, {"x": count})
        return {"x": {"min": float(lo), "max": float(hi), "mean": float(mean),
                      "std": _nz(std), "count": int(count)}}

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        if ds.kind == "table":
            frame = ds.frame.map_partitions(_scale_frame, self.name, stats["columns"],
                                            meta=_scaled_meta(ds.frame._meta, stats["columns"]))
            return ds.evolve(frame=frame)
        shift, scale = affine(self.name, stats["x"])
        x = ((ds.x - shift) / scale).astype(ds.x.dtype if ds.x.dtype.kind == "f" else "float32")
        return ds.evolve(x=x)


def _nz(value: Any) -> float:
    import math

    v = float(value)
    return 1.0 if math.isnan(v) or v == 0.0 else v  # a constant column stays finite


def _scale_frame(part: Any, kind: str, columns: Mapping[str, Mapping[str, float]]) -> Any:
    out = part.copy(deep=False)
    for col, s in columns.items():
        shift, scale = affine(kind, s)
        out[col] = ((part[col] - shift) / scale).astype("float64")
    return out


def _scaled_meta(meta: Any, columns: Mapping[str, Any]) -> Any:
    return meta.astype({c: "float64" for c in columns})


@dataclass(frozen=True)
class MinMaxScale(_Scale):
    """Scale features to [0, 1] with the minimum and maximum seen in one pass.

    >>> MinMaxScale(columns=["f0"]).name
    'min_max_scale'
    """

    name: ClassVar[str] = "min_max_scale"


@dataclass(frozen=True)
class StandardScale(_Scale):
    """Centre features on 0 with unit variance (mean and std fit in one pass).

    >>> StandardScale().fits
    True
    """

    name: ClassVar[str] = "standard_scale"


# -- split --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Split(Step):
    """Deterministic, stratified train/validation/test split.

    Within each partition, each class's samples are shuffled with a generator seeded by
    ``(seed, partition index)`` and cut in the given proportions, so every class keeps
    them (exactly, up to one sample per partition and class) and the result does not
    depend on the workers. Steps after it fit their statistics on the ``train`` split
    only; a step that would fit them before it is refused (the pipeline says so).

    >>> Split(train=0.5, validation=0.5, test=0.0).fractions()
    (0.5, 0.5, 0.0)
    """

    name: ClassVar[str] = "split"
    assigns_splits: ClassVar[bool] = True
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    stratify: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        total = self.train + self.validation + self.test
        if min(self.fractions()) < 0 or abs(total - 1.0) > 1e-6:
            raise UsageError(f"step 'split': train + validation + test must be 1 with none "
                             f"negative, got {self.train} + {self.validation} + {self.test}")

    def fractions(self) -> tuple[float, float, float]:
        return (self.train, self.validation, self.test)

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        import numpy as np

        if ds.kind == "table":
            target = ds.target if self.stratify else None
            meta = ds.frame._meta.assign(**{SPLIT_COLUMN: np.int8(0)})
            frame = ds.frame.map_partitions(_split_frame, target, self.fractions(), self.seed,
                                            partition_info=True, meta=meta)
            return ds.evolve(frame=frame)
        import dask.array as da

        labels = ds.y if (self.stratify and ds.y is not None) else da.zeros_like(ds.y)
        args = [labels] if ds.mask is None else [labels, ds.mask]
        mask = da.map_blocks(_split_block, *args, fractions=self.fractions(), seed=self.seed,
                             dtype=np.int8)
        return ds.evolve(mask=mask)


def assign_splits(labels: Any, fractions: tuple[float, float, float], seed: int,
                  index: int) -> Any:
    """Split codes for one partition's ``labels`` (NumPy), stratified by label."""
    import numpy as np

    rng = np.random.default_rng([seed, index])
    codes = np.empty(len(labels), dtype=np.int8)
    edges = np.cumsum(fractions)
    for cls in np.unique(labels):
        where = np.flatnonzero(labels == cls)
        where = where[rng.permutation(len(where))]
        # One random offset per class: rounding errors do not always favour "train".
        cuts = np.floor(edges * len(where) + rng.random()).astype(int).clip(0, len(where))
        cuts[-1] = len(where)
        start = 0
        for code, stop in enumerate(cuts):
            codes[where[start:stop]] = code
            start = stop
    return codes


def _split_frame(part: Any, target: str | None, fractions: tuple[float, float, float],
                 seed: int, partition_info: Mapping[str, Any] | None = None) -> Any:
    import numpy as np

    index = int((partition_info or {}).get("number", 0))
    labels = part[target].to_numpy() if target else np.zeros(len(part), dtype=np.int8)
    return part.assign(**{SPLIT_COLUMN: assign_splits(labels, fractions, seed, index)})


def _split_block(labels: Any, mask: Any = None, *, fractions: tuple[float, float, float],
                 seed: int, block_info: Mapping[Any, Any] | None = None) -> Any:
    import numpy as np

    index = int(block_info[0]["chunk-location"][0]) if block_info else 0
    codes = assign_splits(labels, fractions, seed, index)
    return codes if mask is None else np.where(mask < 0, np.int8(DROPPED), codes)


# -- augmentation -------------------------------------------------------------------------

@dataclass(frozen=True)
class Augment(Step):
    """Random shift, rotation, flip and noise of images, reproducible per sample.

    Each sample's generator is seeded by ``(seed, copy, global sample index)``: the
    result is the same whatever the workers or chunking. ``copies=0`` transforms the
    samples of ``splits`` in place; ``copies=k`` keeps them and appends ``k`` augmented
    copies (of samples in ``splits`` only). Put it after ``split`` so validation and
    test data stay untouched.

    >>> Augment(shift=2, rotate=10, flip=True, noise=0.05, seed=1).params()["splits"]
    ['train']
    """

    name: ClassVar[str] = "augment"
    changes_rows: ClassVar[bool] = True
    kinds: ClassVar[tuple[str, ...]] = ("tensor",)
    shift: int = 0
    rotate: float = 0.0
    flip: bool = False
    noise: float = 0.0
    copies: int = 0
    splits: list[str] = field(default_factory=lambda: ["train"])
    seed: int = 0

    def __post_init__(self) -> None:
        for s in self.splits:
            if s not in SPLIT_CODES:
                raise UsageError(f"step 'augment': unknown split '{s}'; splits: "
                                 f"{', '.join(SPLIT_CODES)}")
        if self.copies < 0:
            raise UsageError("step 'augment': copies must be >= 0")

    def check(self, ds: DaskDataset) -> None:
        super().check(ds)
        if ds.x.ndim not in (3, 4):
            raise UsageError(f"step 'augment' needs images (n, h, w[, c]); dataset "
                             f"{ds.name!r} has samples of shape {tuple(ds.x.shape[1:])}")

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        import dask.array as da
        import numpy as np

        codes = [SPLIT_CODES[s] for s in self.splits]
        if ds.mask is None:
            codes.append(SPLIT_CODES["all"])  # nothing split yet: every sample qualifies
        mask = ds.mask if ds.mask is not None else da.full(
            ds.x.shape[0], SPLIT_CODES["all"], dtype=np.int8, chunks=(ds.x.chunks[0],))
        x = ds.x if ds.x.dtype.kind == "f" else ds.x.astype(np.float32)
        opts = {"shift": self.shift, "rotate": self.rotate, "flip": self.flip,
                "noise": self.noise, "seed": self.seed, "codes": codes}
        if self.copies == 0:
            return ds.evolve(x=x.map_blocks(_augment_block, _expand(mask, x.ndim), copy=0,
                                            dtype=x.dtype, **opts))
        xs, ys, masks = [x], [ds.y], [mask]
        selected = da.isin(mask, codes)
        for k in range(1, self.copies + 1):
            xs.append(x.map_blocks(_augment_block, _expand(mask, x.ndim), copy=k,
                                   dtype=x.dtype, **opts))
            ys.append(ds.y)
            masks.append(da.where(selected, mask, np.int8(DROPPED)).astype(np.int8))
        return ds.evolve(x=da.concatenate(xs), y=da.concatenate(ys),
                         mask=da.concatenate(masks))


def _expand(mask: Any, ndim: int) -> Any:
    return mask.reshape((mask.shape[0],) + (1,) * (ndim - 1))


def _augment_block(x: Any, mask: Any, *, copy: int, shift: int, rotate: float, flip: bool,
                   noise: float, seed: int, codes: list[int],
                   block_info: Mapping[Any, Any] | None = None) -> Any:
    import numpy as np
    from scipy import ndimage

    start = int(block_info[0]["array-location"][0][0]) if block_info else 0
    out = np.array(x, copy=True)
    flat = mask.reshape(-1)
    for i in np.flatnonzero(np.isin(flat, codes)):
        rng = np.random.default_rng([seed, copy, start + i])
        img = out[i]
        if rotate:
            img = ndimage.rotate(img, rng.uniform(-rotate, rotate), axes=(0, 1),
                                 reshape=False, order=1, mode="nearest")
        if shift:
            d = rng.integers(-shift, shift + 1, size=2)
            img = ndimage.shift(img, (*d, *((0,) * (img.ndim - 2))), order=0, mode="nearest")
        if flip and rng.random() < 0.5:
            img = img[:, ::-1]
        if noise:
            img = img + rng.normal(0.0, noise, size=img.shape)
        out[i] = img
    return out


@dataclass(frozen=True)
class TableNoise(Step):
    """Gaussian noise (standard deviation ``std``) on numeric columns of ``splits`` rows.

    >>> TableNoise(std=0.1).name
    'table_noise'
    """

    name: ClassVar[str] = "table_noise"
    kinds: ClassVar[tuple[str, ...]] = ("table",)
    std: float = 0.01
    columns: list[str] | None = None
    splits: list[str] = field(default_factory=lambda: ["train"])
    seed: int = 0

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        cols = self._columns(ds, self.columns)
        codes = [SPLIT_CODES[s] for s in self.splits]
        meta = ds.frame._meta.astype({c: "float64" for c in cols})
        frame = ds.frame.map_partitions(_noise_frame, cols, self.std, codes, self.seed,
                                        partition_info=True, meta=meta)
        return ds.evolve(frame=frame)


def _noise_frame(part: Any, cols: list[str], std: float, codes: list[int], seed: int,
                 partition_info: Mapping[str, Any] | None = None) -> Any:
    import numpy as np

    index = int((partition_info or {}).get("number", 0))
    rng = np.random.default_rng([seed, index])
    rows = (part[SPLIT_COLUMN].isin(codes).to_numpy() if SPLIT_COLUMN in part.columns
            else np.ones(len(part), dtype=bool))
    out = part.copy(deep=False)
    for col in cols:
        values = part[col].to_numpy(dtype="float64", copy=True)
        values[rows] += rng.normal(0.0, std, size=int(rows.sum()))
        out[col] = values
    return out


# -- serving ------------------------------------------------------------------------------

def transform(manifest: str | Path | Mapping[str, Any], data: Any) -> Any:
    """Apply a prepared dataset's fitted cleaning and scaling to new data (serving).

    ``manifest`` is the output directory, its ``manifest.json``, or the loaded dict;
    ``data`` is a pandas DataFrame (tables) or a NumPy array of samples (tensors). The
    operations are those a model bundle trained on the dataset carries
    (:func:`hybridnb.data.preprocessing.from_manifest`), so both agree.

    >>> transform("build/data/digits", images)  # doctest: +SKIP
    """
    import numpy as np

    if isinstance(manifest, Mapping):
        info: Mapping[str, Any] = manifest
    else:
        path = Path(manifest)
        info = json.loads((path / "manifest.json" if path.is_dir() else path).read_text())
    pre = from_manifest(info)
    if pre.columns is not None:
        return pre.frame(data)
    return pre.apply(np.asarray(data, dtype=np.float32)).astype(np.float32)
