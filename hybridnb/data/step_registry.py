"""Pipeline steps by name: the built-ins and the ones users register.

The YAML of a pipeline names its steps (``{"drop_missing": {"how": "all"}}``); this
registry turns names into :class:`~hybridnb.data.steps.Step` objects. It imports the
built-in steps, which import only their base (:mod:`hybridnb.data.steps`).

>>> from hybridnb.data.step_registry import make_step
>>> make_step("drop_missing", {"how": "all"})
DropMissing(columns=None, how='all')
>>> make_step("drop_missing", {"hwo": "all"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
hybridnb.errors.UsageError: step 'drop_missing': unknown parameter 'hwo' (did you mean 'how'?)...
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import UsageError, did_you_mean
from .cleaning import CheckSchema, ClipOutliers, Deduplicate, DropMissing, FillMissing
from .steps import FunctionStep, Step
from .transforms import Augment, MinMaxScale, Split, StandardScale, TableNoise

#: The steps every pipeline may name.
BUILTIN: tuple[type[Step], ...] = (DropMissing, FillMissing, Deduplicate, ClipOutliers,
                                   CheckSchema, MinMaxScale, StandardScale, Split, Augment,
                                   TableNoise)

_REGISTRY: dict[str, Callable[..., Step]] = {}


def register_step(name: str, factory: Callable[..., Any]) -> None:
    """Make a step usable by name (in YAML): a :class:`Step` subclass or a plain function.

    >>> def clamp(df, hi=1.0):
    ...     return df.clip(upper=hi)
    >>> register_step("clamp", clamp)
    >>> make_step("clamp", {"hi": 2.0}).params()["kwargs"]
    {'hi': 2.0}
    """
    if isinstance(factory, type) and issubclass(factory, Step):
        _REGISTRY[name] = factory
    else:
        def build(*, checkpoint: bool | None = None, **kwargs: Any) -> Step:
            _check_kwargs(name, factory, kwargs)
            return FunctionStep(factory, dict(kwargs), checkpoint=checkpoint)

        _REGISTRY[name] = build


def _check_kwargs(name: str, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    allowed = list(sig.parameters)[1:]
    for key in kwargs:
        if key not in allowed:
            raise UsageError(f"step '{name}': unknown parameter '{key}'"
                             f"{did_you_mean(key, allowed)}; parameters: "
                             f"{', '.join(allowed) or 'none'}")


def known_steps() -> list[str]:
    """Names usable in a pipeline definition.

    >>> "standard_scale" in known_steps()
    True
    """
    _builtins()
    return sorted(_REGISTRY)


def make_step(name: str, params: Mapping[str, Any] | None = None) -> Step:
    """Build a registered step from its name and parameters, with clear errors."""
    _builtins()
    params = dict(params or {})
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown step '{name}'{did_you_mean(name, _REGISTRY)}; known "
                         f"steps: {', '.join(sorted(_REGISTRY))}") from None
    if isinstance(factory, type) and dataclasses.is_dataclass(factory):
        allowed = [f.name for f in dataclasses.fields(factory) if f.name != "checkpoint"]
        allowed.append("checkpoint")
        for key in params:
            if key not in allowed:
                raise UsageError(f"step '{name}': unknown parameter '{key}'"
                                 f"{did_you_mean(key, allowed)}; parameters: "
                                 f"{', '.join(allowed)}")
    try:
        return factory(**params)
    except TypeError as exc:
        raise UsageError(f"step '{name}': {exc}") from None


def as_step(item: Any) -> Step:
    """A :class:`Step` from a step, a plain function, or ``{"name": {params}}``."""
    if isinstance(item, Step):
        return item
    if isinstance(item, Mapping):
        if len(item) != 1:
            raise UsageError(f"a step is written as {{name: {{parameters}}}}, got {dict(item)!r}")
        (name, params), = item.items()
        return make_step(str(name), params or {})
    if isinstance(item, str):
        return make_step(item)
    if callable(item):
        return FunctionStep(item)
    raise UsageError(f"not a step: {item!r}; use a Step, a function or {{name: {{...}}}}")


def _builtins() -> None:
    for cls in BUILTIN:
        _REGISTRY.setdefault(cls.name, cls)
