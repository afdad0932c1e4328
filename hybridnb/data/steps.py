"""Pipeline steps: the base class and plain-function steps.

A step is a small frozen dataclass: its fields are its parameters (hashed into cache
keys and recorded in the manifest). It may :meth:`Step.fit` statistics in one
distributed pass, then :meth:`Step.apply` returns a new lazy dataset. Steps never
compute in ``apply``: the pipeline streams all of them in a single final pass.

Cleaning steps live in :mod:`hybridnb.data.cleaning`, scaling, splitting and
augmentation in :mod:`hybridnb.data.transforms`; names find steps through
:mod:`hybridnb.data.step_registry` (which imports them all, so this base imports none).

A user step is a plain function: for tables it takes and returns a pandas DataFrame
(one partition), for tensors it takes and returns a NumPy block of samples.

>>> FunctionStep(lambda df: df.dropna())   # doctest: +ELLIPSIS
FunctionStep(fn=<function <lambda> at ...>, kwargs={})
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import UsageError, did_you_mean
from .dask_dataset import SPLIT_COLUMN, DaskDataset, fingerprint

logger = logging.getLogger(__name__)

#: Computes dask objects in one pass where the data may be processed; returns values.
Compute = Callable[..., tuple[Any, ...]]


@dataclass(frozen=True)
class StepContext:
    """What a step may need to know about where it runs."""

    shuffle_method: str = "tasks"  # "p2p" on a distributed cluster: disk-backed, bounded memory


@dataclass(frozen=True)
class Step:
    """Base class of pipeline steps.

    Subclasses are frozen dataclasses whose fields are the parameters, set ``name``
    (the YAML key) and ``kinds`` (``"table"``, ``"tensor"``), and implement
    :meth:`apply`; steps with statistics set ``fits = True`` and implement :meth:`fit`.

    Statistics come from the training rows only: once a split step has run, the
    dataset :meth:`fit` sees holds the ``train`` split and nothing else (see
    :meth:`~hybridnb.data.dask_dataset.DaskDataset.fit_view`), and a pipeline whose step
    :attr:`learns` from rows before its split is refused, since it would learn from
    validation and test rows.
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ("table", "tensor")
    fits: ClassVar[bool] = False
    #: Whether this step assigns split codes (``split``): statistics fit after it see
    #: the training rows only.
    assigns_splits: ClassVar[bool] = False
    #: Whether the number of samples can change (the summary counts rows after it).
    changes_rows: ClassVar[bool] = False
    #: Whether this step's output is saved to the cache unless ``checkpoint=False``:
    #: true for steps that cost far more than writing and reading their output back.
    checkpoint_by_default: ClassVar[bool] = False

    #: Save this step's output in the cache, so that a rerun that changes only later
    #: steps resumes from here. ``None``: the step's default. Not a parameter: it does
    #: not change the output, so it is left out of :meth:`params` and the cache key.
    checkpoint: bool | None = field(default=None, kw_only=True, repr=False, compare=False)

    @property
    def checkpointed(self) -> bool:
        """Whether this step's output is saved to the cache when it runs."""
        return self.checkpoint_by_default if self.checkpoint is None else self.checkpoint

    def params(self) -> dict[str, Any]:
        """The parameters, as plain values (cache keys, manifest, YAML)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name != "checkpoint"}

    def token(self) -> str:
        """What identifies this step's behaviour (its name, version and parameters)."""
        return fingerprint(self.name, type(self).__qualname__, self.params())

    def check(self, ds: DaskDataset) -> None:
        """Raise a clear error when this step cannot apply to ``ds`` (before any work)."""
        if ds.kind not in self.kinds:
            raise UsageError(f"step '{self.name}' works on {' and '.join(self.kinds)} "
                             f"datasets; {ds.name!r} is a {ds.kind} dataset")

    @property
    def learns(self) -> bool:
        """Whether :meth:`fit` learns from the rows (not only from the parameters).

        A step that fills with a constant or clips to given bounds fits nothing from the
        data, so it may come before the split.
        """
        return self.fits

    def fit(self, ds: DaskDataset, compute: Compute) -> dict[str, Any]:
        """Statistics this step needs, computed in one distributed pass.

        ``ds`` holds only the rows statistics may come from: for tables, a frame of the
        training rows; for tensors, ``x`` with every other sample's values NaN (chunks
        stay known), so reductions must be NaN-aware, as the built-in steps' are.
        """
        return {}

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        raise NotImplementedError

    def _columns(self, ds: DaskDataset, columns: Sequence[str] | None,
                 default: Sequence[str] | None = None) -> list[str]:
        cols = list(columns) if columns is not None else list(
            default if default is not None else ds.feature_columns)
        for c in cols:
            if c not in ds.columns:
                raise UsageError(f"step '{self.name}': column '{c}'"
                                 f"{did_you_mean(c, ds.columns)} is not in dataset "
                                 f"{ds.name!r}; columns: {', '.join(ds.columns)}")
        return cols


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def require_values(step: str, stats: Mapping[str, Any], counts: Mapping[str, Any]) -> None:
    """An all-NaN column cannot be scaled or filled: say which, and in which step."""
    for col, n in counts.items():
        if int(n) == 0:
            raise UsageError(f"step '{step}': column '{col}' has no values (all NaN); drop "
                             "the column or fill it with a constant first")


# -- user functions -----------------------------------------------------------------------

@dataclass(frozen=True)
class FunctionStep(Step):
    """A plain function as a step: ``fn(partition, **kwargs)`` per partition or block.

    For tables ``fn`` takes and returns a pandas DataFrame; for tensors a NumPy block of
    samples, returning the same shape. Its cache token includes its source code, so
    editing the function recomputes from it.

    >>> def double(df):
    ...     return df * 2
    >>> FunctionStep(double).name
    'double'
    """

    changes_rows: ClassVar[bool] = True
    fn: Callable[..., Any] = field(default=lambda df: df)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:  # type: ignore[override]
        return getattr(self.fn, "__name__", "function")

    def params(self) -> dict[str, Any]:
        return {"function": f"{self.fn.__module__}.{self.fn.__qualname__}",
                "kwargs": _plain(self.kwargs)}

    def token(self) -> str:
        try:
            code = inspect.getsource(self.fn)
        except (OSError, TypeError):  # built-ins, lambdas in a REPL: use the bytecode
            code = repr(getattr(getattr(self.fn, "__code__", None), "co_code", self.fn))
        digest = hashlib.sha256(code.encode()).hexdigest()
        return fingerprint("function", self.params(), digest)

    def apply(self, ds: DaskDataset, stats: Mapping[str, Any], ctx: StepContext) -> DaskDataset:
        if ds.kind == "table":
            split = SPLIT_COLUMN in ds.frame.columns
            fn = _call_keep_split if split else self.fn
            args = [self.fn] if split else []
            kwargs: dict[str, Any] = dict(self.kwargs)
            try:
                # Learn the output columns from the empty frame: dask's own inference
                # calls the function on made-up rows, which user code may not expect.
                kwargs["meta"] = fn(ds.frame._meta, *args, **self.kwargs)
            except Exception:
                logger.debug("step %s: no meta from an empty frame; dask infers it", self.name)
            return ds.evolve(frame=ds.frame.map_partitions(fn, *args, **kwargs))
        return ds.evolve(x=ds.x.map_blocks(self.fn, dtype=ds.x.dtype, **self.kwargs))


def _call_keep_split(part: Any, fn: Callable[..., Any], **kwargs: Any) -> Any:
    # The split column is ours, not the user's: hide it from their function.
    out = fn(part.drop(columns=[SPLIT_COLUMN]), **kwargs)
    return out.assign(**{SPLIT_COLUMN: part[SPLIT_COLUMN]})
