"""Per-row preprocessing as data: what a model needs applied to raw inputs at inference.

A prepared dataset's manifest records every step's fitted statistics. The steps that
act on each row on its own (fill missing values, clip, scale) become a short list of
elementwise operations that a model bundle carries and its endpoint applies to raw
rows, so that training and serving never disagree. Steps that filter or add rows
(``drop_missing``, ``deduplicate``, ``split``, ``augment``, ``table_noise``) have no
inference counterpart. A user's function step is code, which a bundle never carries:
it is listed under ``not_applied`` (and logged), since raw rows would miss it.

The JSON form, ``"preprocessing"`` in a bundle's ``hybridnb-model.json``::

    {"format": "hybridnb-preprocessing/1", "kind": "table",
     "columns": ["f0", "f1"],
     "steps": [{"op": "fill", "value": [0.5, null], "step": "fill_missing",
                "fit_on": {"split": "train", "rows": 1437}},
               {"op": "clip", "lower": [-3.0, null], "upper": [3.0, null]},
               {"op": "scale", "shift": [0.1, 2.0], "scale": [1.5, 4.0]}],
     "not_applied": [], "dataset": {"name": "wine", "pipeline": "wine", "key": "…"}}

``columns`` is a table's feature order (the model's input columns); each parameter is a
number or a (nested) list of numbers that broadcasts to one input row; ``null`` leaves a
value as it is (no fill, no bound). ``scale`` computes ``(x - shift) / scale``. Loading
checks every field against the input's shape: the file is data, never code.
Bundles written before this form carry ``{"mean": m, "std": s}``: one ``scale`` step.

>>> p = Preprocessing.parse({"mean": 1.0, "std": 2.0}, shape=[3])
>>> p.apply(np.array([[1.0, 3.0, 5.0]])).tolist()
[[0.0, 1.0, 2.0]]
>>> Preprocessing.parse({"format": FORMAT, "steps": [{"op": "exec"}]})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
hybridnb.errors.UsageError: preprocessing.steps[0].op: unknown operation 'exec'; ...
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError

logger = logging.getLogger(__name__)

FORMAT = "hybridnb-preprocessing/1"
#: Operations and their parameters, in the order they are applied within one step.
OPS: dict[str, tuple[str, ...]] = {"fill": ("value",), "clip": ("lower", "upper"),
                                   "scale": ("shift", "scale")}
_TOP_KEYS = ("format", "kind", "columns", "steps", "not_applied", "dataset")
_INFO_KEYS = ("step", "fit_on")
#: Pipeline steps that filter, add or split rows: nothing to do to one row at inference.
ROW_STEPS = frozenset({"drop_missing", "deduplicate", "split", "augment", "table_noise",
                       "check_schema"})
_MAX_STEPS = 64
_MAX_DIMS = 8
_MAX_VALUES = 1 << 22  # a parameter never holds more values than one input row
_MAX_TEXT = 1024


@dataclass(frozen=True)
class Op:
    """One elementwise operation: ``op`` and its float64 parameters (NaN for ``null``)."""

    op: str
    params: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    #: Where each parameter came from, for messages (``preprocessing.steps[0].scale``).
    labels: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def label(self, key: str) -> str:
        return self.labels.get(key, key)

    def apply(self, x: Any, p: Mapping[str, Any], xp: Any) -> Any:
        """Apply to ``x`` (float64) with parameters ``p`` in the array module ``xp``."""
        if self.op == "fill":  # a NaN fill ("null") leaves NaN as it is: no branch needed
            return xp.where(xp.isnan(x), p["value"], x)
        if self.op == "clip":  # NaN stays NaN, as pandas' and NumPy's clip do
            return xp.minimum(xp.maximum(x, p["lower"]), p["upper"])
        return (x - p["shift"]) / p["scale"]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for name, value in self.params.items():
            if self.op == "clip":  # the ±inf of a missing bound is written as null
                value = np.where(np.isinf(value), np.nan, value)
            out[name] = _plain(value)
        out.update(self.info)
        return out


@dataclass(frozen=True)
class Preprocessing:
    """Validated elementwise preprocessing of raw inputs (see the module docstring).

    Build one with :meth:`parse` (from JSON: a bundle's metadata) or
    :func:`from_manifest` (from a prepared dataset). :meth:`apply` works on NumPy
    arrays and torch tensors alike, computing in float64.
    """

    ops: tuple[Op, ...] = ()
    kind: str | None = None
    columns: tuple[str, ...] | None = None
    not_applied: tuple[str, ...] = ()
    dataset: dict[str, Any] = field(default_factory=dict)
    _torch: dict[Any, list[dict[str, Any]]] = field(default_factory=dict, repr=False,
                                                    compare=False)

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def parse(cls, obj: Any, shape: Sequence[int] | None = None) -> Preprocessing | None:
        """Validate ``obj`` (JSON) against one input row's ``shape``; ``None``: nothing to do.

        Raises :class:`~hybridnb.errors.UsageError` naming the field at fault.

        >>> Preprocessing.parse({"mean": [0.0, 1.0], "std": 2.0}, shape=[3])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hybridnb.errors.UsageError: preprocessing.mean: shape [2] does not fit an input row...
        """
        if obj is None or (isinstance(obj, Mapping) and not obj):
            return None
        if not isinstance(obj, Mapping):
            raise UsageError(f"preprocessing: expected a JSON object, got {_kind(obj)}")
        if "format" not in obj and "steps" not in obj:
            # The first form: {"mean", "std"}, other keys ignored (as they always were).
            if "mean" not in obj or "std" not in obj:
                return None
            labels = {"shift": "preprocessing.mean", "scale": "preprocessing.std"}
            op = Op("scale", {"shift": _array(obj["mean"], labels["shift"]),
                              "scale": _array(obj["std"], labels["scale"])}, labels=labels)
            out = cls(ops=(_checked(op),))
        else:
            out = cls._parse_v1(obj)
        if shape is not None:
            out.check_shape(shape)
        return out

    @classmethod
    def _parse_v1(cls, obj: Mapping[str, Any]) -> Preprocessing:
        for key in obj:
            if key not in _TOP_KEYS:
                raise UsageError(f"preprocessing: unknown key {str(key)[:80]!r}; keys: "
                                 f"{', '.join(_TOP_KEYS)}")
        if obj.get("format") != FORMAT:
            raise UsageError(f"preprocessing.format: {_short(obj.get('format'))}, expected "
                             f"{FORMAT!r}")
        kind = obj.get("kind")
        if kind not in (None, "table", "tensor"):
            raise UsageError(f"preprocessing.kind: {_short(kind)}, expected 'table' or "
                             "'tensor'")
        columns = obj.get("columns")
        if columns is not None:
            columns = tuple(_texts(columns, "preprocessing.columns"))
            if len(set(columns)) != len(columns):
                raise UsageError("preprocessing.columns: a column is named twice")
        steps = obj.get("steps") or []
        if not isinstance(steps, list) or len(steps) > _MAX_STEPS:
            raise UsageError(f"preprocessing.steps: expected a list of at most {_MAX_STEPS} "
                             f"operations, got {_kind(steps)}")
        ops = tuple(_checked(cls._parse_op(s, f"preprocessing.steps[{i}]"))
                    for i, s in enumerate(steps))
        return cls(ops=ops, kind=kind, columns=columns,
                   not_applied=tuple(_texts(obj.get("not_applied") or [],
                                            "preprocessing.not_applied")),
                   dataset=_info_dict(obj.get("dataset"), "preprocessing.dataset"))

    @staticmethod
    def _parse_op(obj: Any, where: str) -> Op:
        if not isinstance(obj, Mapping):
            raise UsageError(f"{where}: expected an object, got {_kind(obj)}")
        name = obj.get("op")
        if not isinstance(name, str) or name not in OPS:
            raise UsageError(f"{where}.op: unknown operation {_short(name)}; operations: "
                             f"{', '.join(OPS)}")
        for key in obj:
            if key != "op" and key not in OPS[name] and key not in _INFO_KEYS:
                raise UsageError(f"{where}: unknown key {str(key)[:80]!r} for '{name}'; "
                                 f"keys: op, {', '.join(OPS[name] + _INFO_KEYS)}")
        params = {}
        for key in OPS[name]:
            if key not in obj:
                raise UsageError(f"{where}: '{name}' needs '{key}'")
            params[key] = _array(obj[key], f"{where}.{key}")
        info: dict[str, Any] = {}
        if "step" in obj:
            info["step"] = _text(obj["step"], f"{where}.step")
        if "fit_on" in obj:
            info["fit_on"] = _fit_on(obj["fit_on"], f"{where}.fit_on")
        return Op(name, params, info, labels={k: f"{where}.{k}" for k in params})

    def check_shape(self, shape: Sequence[int]) -> None:
        """Refuse parameters or columns that do not fit one input row of ``shape``."""
        row = tuple(int(d) for d in shape)
        if self.columns is not None and (len(row) != 1 or row[0] != len(self.columns)):
            raise UsageError(f"preprocessing.columns: {len(self.columns)} columns for an "
                             f"input row of shape {list(row)}")
        for op in self.ops:
            for key, value in op.params.items():
                try:
                    fits = np.broadcast_shapes(value.shape, row) == row
                except ValueError:
                    fits = False
                if not fits:
                    raise UsageError(f"{op.label(key)}: shape {list(value.shape)} does not "
                                     f"fit an input row of shape {list(row)}")

    # -- writing ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The JSON form (see the module docstring); :meth:`parse` reads it back."""
        out: dict[str, Any] = {"format": FORMAT, "kind": self.kind,
                               "columns": None if self.columns is None else list(self.columns),
                               "steps": [op.to_json() for op in self.ops],
                               "not_applied": list(self.not_applied)}
        if self.dataset:
            out["dataset"] = dict(self.dataset)
        return out

    # -- applying --------------------------------------------------------------------------

    def apply(self, x: Any) -> Any:
        """The preprocessed batch: a NumPy array (float64) or a torch tensor (``x``'s dtype).

        >>> p = Preprocessing((Op("fill", {"value": np.array(0.0)}),))
        >>> p.apply(np.array([[np.nan, 2.0]])).tolist()
        [[0.0, 2.0]]
        """
        if type(x).__module__.startswith("torch"):
            return self._apply_torch(x)
        out = np.asarray(x, dtype=np.float64)
        for op in self.ops:
            out = op.apply(out, op.params, np)
        return out

    def _apply_torch(self, x: Any) -> Any:
        import torch

        if not self.ops:
            return x
        params = self._torch.get(x.device)
        if params is None:  # tensors made once per device, not on every batch
            # Normal tensors even when first called under inference_mode (the endpoint):
            # inference tensors would break a later call that autograd tracks.
            with torch.inference_mode(False):
                params = [{k: torch.from_numpy(v).to(x.device) for k, v in op.params.items()}
                          for op in self.ops]
            self._torch[x.device] = params
        out = x.to(torch.float64)
        for op, p in zip(self.ops, params, strict=True):
            out = op.apply(out, p, torch)
        return out.to(x.dtype)

    def invert(self, x: Any) -> np.ndarray:
        """Raw inputs that :meth:`apply` maps back onto ``x``, rows it already transformed.

        For evaluating a bundle on prepared shards: the scalings are undone (last first);
        fills and clips are not, since applying them again to their own output changes
        nothing.

        >>> p = Preprocessing((Op("clip", {"lower": np.array(0.0), "upper": np.array(1.0)}),
        ...                    Op("scale", {"shift": np.array(1.0), "scale": np.array(2.0)})))
        >>> p.apply(p.invert(np.array([-0.5, 0.0]))).tolist()
        [-0.5, 0.0]
        """
        out = np.asarray(x, dtype=np.float64)
        for op in reversed(self.ops):
            if op.op == "scale":
                out = out * op.params["scale"] + op.params["shift"]
        return out

    def rows(self, data: Any) -> Any:
        """``data``'s rows as the model's input: a DataFrame's columns in the model's order.

        Anything else passes through unchanged.
        """
        if self.columns is None or not hasattr(data, "columns"):
            return data
        missing = [c for c in self.columns if c not in data.columns]
        if missing:
            raise UsageError(f"the rows lack column(s) {', '.join(map(repr, missing))}; the "
                             f"model takes {', '.join(self.columns)}")
        return data[list(self.columns)].to_numpy(dtype=np.float64)

    def frame(self, data: Any) -> Any:
        """A DataFrame with the columns these operations change transformed (serving)."""
        if self.columns is None:
            raise UsageError("this preprocessing has no columns: it applies to tensors")
        n = len(self.columns)
        touched = [j for j in range(n) if any(_changes(op, j, n) for op in self.ops)]
        if not touched:
            return data
        cols = [self.columns[j] for j in touched]
        x = data[cols].to_numpy(dtype=np.float64)
        for op in self.ops:
            x = op.apply(x, {k: np.broadcast_to(v, (n,))[touched] for k, v in op.params.items()},
                         np)
        return data.assign(**{c: x[:, k] for k, c in enumerate(cols)})

    def describe(self) -> str:
        """One line for people: ``fill → scale (fit on train, 142 rows)``."""
        if not self.ops:
            return "none" + (f" ({len(self.columns)} columns)" if self.columns else "")
        fit = next((op.info["fit_on"] for op in self.ops if op.info.get("fit_on")), None)
        text = " → ".join(op.op for op in self.ops)
        if fit:
            text += f" (fit on {fit['split']}, {fit['rows']} rows)"
        if self.not_applied:
            text += f"; not applied: {', '.join(self.not_applied)}"
        return text


def _checked(op: Op) -> Op:
    """``op`` with its values checked; a clip's missing bounds become ±inf."""
    p = op.params
    if op.op == "scale":
        for key in ("shift", "scale"):
            if np.isnan(p[key]).any():
                raise UsageError(f"{op.label(key)}: null is not allowed")
        if (p["scale"] == 0).any():
            raise UsageError(f"{op.label('scale')} contains zeros (a division by zero)")
        # Endpoints compute in float32: a scale below its smallest normal number is 0 (or
        # a subnormal) there, and its division overflows.
        if (np.abs(p["scale"]) < np.finfo(np.float32).tiny).any():
            raise UsageError(f"{op.label('scale')} has values below "
                             f"{np.finfo(np.float32).tiny:.3g}, which float32 inputs "
                             "cannot be divided by")
        return op
    if op.op == "clip":
        lo, hi = p["lower"], p["upper"]
        try:
            above = bool((lo > hi).any())  # NaN (no bound) compares False
        except ValueError:
            above = False  # shapes that do not broadcast: check_shape names them
        if above:
            raise UsageError(f"{op.label('lower')}: a lower bound is above its upper bound")
        return Op("clip", {"lower": np.where(np.isnan(lo), -np.inf, lo),
                           "upper": np.where(np.isnan(hi), np.inf, hi)}, op.info, op.labels)
    return op


def _changes(op: Op, j: int, n: int) -> bool:
    p = {k: np.broadcast_to(v, (n,))[j] for k, v in op.params.items()}
    if op.op == "fill":
        return not np.isnan(p["value"])
    if op.op == "clip":
        return bool(np.isfinite(p["lower"]) or np.isfinite(p["upper"]))
    return bool(p["shift"] != 0 or p["scale"] != 1)


# -- from a prepared dataset --------------------------------------------------------------

def affine(kind: str, s: Mapping[str, float]) -> tuple[float, float]:
    """``(shift, scale)`` of a scaling step's statistics: ``(x - shift) / scale``."""
    if kind == "standard_scale":
        return s["mean"], s["std"]
    span = s["max"] - s["min"]
    return s["min"], span if span else 1.0


def from_manifest(manifest: Mapping[str, Any]) -> Preprocessing:
    """The per-row preprocessing a prepared dataset's model needs, from its manifest.

    >>> from hybridnb.data import read_manifest
    >>> from_manifest(read_manifest("build/data/wine")).describe()  # doctest: +SKIP
    'clip → scale (fit on train, 142 rows)'
    """
    schema = manifest.get("schema") or {}
    kind = schema.get("kind") or manifest.get("kind")
    columns = None
    if kind == "table":
        columns = [c for c in schema.get("columns", {}) if c != manifest.get("target")]
    ops, skipped = [], []
    for step in manifest.get("steps", []):
        name = step.get("name")
        if name in ROW_STEPS:
            continue
        build = _FROM_STEP.get(name)
        if build is None:
            skipped.append(str(name))
            continue
        op = build(name, step.get("statistics") or {}, columns)
        op.info.update(step=name, **({"fit_on": step["fit_on"]} if step.get("fit_on") else {}))
        op.labels.update({k: f"step '{name}': {k}" for k in op.params})
        ops.append(_checked(op))
    if skipped:
        logger.warning("steps %s of %s are user code: a model bundle cannot apply them to "
                       "raw rows (listed under not_applied)", ", ".join(skipped),
                       manifest.get("name"))
    return Preprocessing(ops=tuple(ops), kind=kind,
                         columns=None if columns is None else tuple(columns),
                         not_applied=tuple(skipped),
                         dataset={k: manifest.get(k) for k in ("name", "pipeline", "key")})


def _per_column(columns: list[str] | None, values: Mapping[str, Any] | Any,
                default: float) -> np.ndarray:
    if columns is None:  # tensors: one scalar for every value
        return np.asarray(default if values is None else values, dtype=np.float64)
    return np.asarray([_num(values.get(c), default) for c in columns], dtype=np.float64)


def _num(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _fill(name: str, stats: Mapping[str, Any], columns: list[str] | None) -> Op:
    return Op("fill", {"value": _per_column(columns, stats.get("fill"), math.nan)})


def _clip(name: str, stats: Mapping[str, Any], columns: list[str] | None) -> Op:
    bounds = stats.get("bounds")
    if columns is None:
        lo, hi = bounds or (None, None)
        return Op("clip", {"lower": np.asarray(_num(lo, math.nan)),
                           "upper": np.asarray(_num(hi, math.nan))})
    pairs = {c: b for c, b in (bounds or {}).items()}
    return Op("clip", {"lower": _per_column(columns, {c: b[0] for c, b in pairs.items()},
                                            math.nan),
                       "upper": _per_column(columns, {c: b[1] for c, b in pairs.items()},
                                            math.nan)})


def _scale(name: str, stats: Mapping[str, Any], columns: list[str] | None) -> Op:
    if columns is None:
        shift, scale = affine(name, stats["x"])
        return Op("scale", {"shift": np.asarray(float(shift)), "scale": np.asarray(float(scale))})
    fitted = {c: affine(name, s) for c, s in (stats.get("columns") or {}).items()}
    return Op("scale", {"shift": _per_column(columns, {c: a[0] for c, a in fitted.items()}, 0.0),
                        "scale": _per_column(columns, {c: a[1] for c, a in fitted.items()}, 1.0)})


_FROM_STEP = {"fill_missing": _fill, "clip_outliers": _clip, "standard_scale": _scale,
              "min_max_scale": _scale}


# -- strict JSON readers ------------------------------------------------------------------

def _kind(value: Any) -> str:
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _array(value: Any, where: str) -> np.ndarray:
    """A number, ``null`` or a rectangular nested list of them, as float64 (NaN: null)."""
    shape: list[int] = []
    level = [value]
    while level and isinstance(level[0], list):
        if len(level) > _MAX_VALUES:
            raise UsageError(f"{where}: more than {_MAX_VALUES} values")
        if not all(isinstance(v, list) and len(v) == len(level[0]) for v in level):
            raise UsageError(f"{where}: expected a number or a rectangular list of numbers")
        shape.append(len(level[0]))
        if len(shape) > _MAX_DIMS:
            raise UsageError(f"{where}: more than {_MAX_DIMS} nested lists")
        level = [x for v in level for x in v]
    values = []
    for v in level:
        if v is None:
            values.append(math.nan)
            continue
        if not _is_number(v):
            raise UsageError(f"{where}: expected numbers, got {_kind(v)} {_short(v)}")
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            raise UsageError(f"{where}: {_short(v)} is not a finite number")
        values.append(f)
    return np.asarray(values, dtype=np.float64).reshape(shape)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise UsageError(f"{where}: expected a string of at most {_MAX_TEXT} characters, "
                         f"got {_kind(value)}")
    return value


def _texts(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise UsageError(f"{where}: expected a list of strings, got {_kind(value)}")
    return [_text(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _fit_on(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"split", "rows"}:
        raise UsageError(f"{where}: expected {{\"split\": ..., \"rows\": ...}}")
    rows = value["rows"]
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise UsageError(f"{where}.rows: expected a count, got {_short(rows)}")
    return {"split": _text(value["split"], f"{where}.split"), "rows": rows}


def _info_dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > 16:
        raise UsageError(f"{where}: expected an object of at most 16 strings")
    return {_text(k, where): None if v is None else _text(v, f"{where}.{k}")
            for k, v in value.items()}


def _plain(value: np.ndarray) -> Any:
    """JSON numbers from an array (NaN as null), nested as the array."""
    if value.ndim == 0:
        v = float(value)
        return None if math.isnan(v) else v
    return [_plain(v) for v in value]
