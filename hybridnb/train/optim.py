"""Optimizers, learning-rate schedules and numeric precision, built from a spec.

>>> import torch
>>> from hybridnb.train.spec import OptimizerSpec, ScheduleSpec
>>> params = [torch.nn.Parameter(torch.zeros(2))]
>>> opt = build_optimizer(OptimizerSpec(name="momentum", lr=0.1, nesterov=True), params)
>>> type(opt).__name__, opt.defaults["nesterov"]
('SGD', True)
>>> sched = build_scheduler(ScheduleSpec(name="cosine", warmup_steps=2), opt, total_steps=10)
>>> round(opt.param_groups[0]["lr"], 3)
0.033
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import torch

    from .spec import OptimizerSpec, ScheduleSpec, TrainSpec

logger = logging.getLogger(__name__)


def build_optimizer(spec: OptimizerSpec, params: Iterable[Any]) -> torch.optim.Optimizer:
    """The optimizer a spec names, with its hyper-parameters and weight decay."""
    import torch

    o = spec
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "momentum":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, eps=o.eps,
                                weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps,
                                 weight_decay=o.weight_decay)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, alpha=o.alpha, eps=o.eps,
                                   momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adagrad":
        return torch.optim.Adagrad(params, lr=o.lr, eps=o.eps, weight_decay=o.weight_decay)
    raise UsageError(f"unknown optimizer {o.name!r}")  # the spec validator stops it first


def lr_factor(spec: ScheduleSpec, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the base learning rate at each optimizer step (a pure function).

    >>> from hybridnb.train.spec import ScheduleSpec
    >>> f = lr_factor(ScheduleSpec(name="step", step_size=2, gamma=0.5), 10)
    >>> [f(s) for s in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    warm = spec.warmup_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if spec.name == "step":
            return float(spec.gamma ** ((step - warm) // spec.step_size))
        if spec.name == "cosine":
            span = max(1, total_steps - warm)
            t = min(1.0, (step - warm) / span)
            return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    return factor


def build_scheduler(spec: ScheduleSpec, optimizer: torch.optim.Optimizer,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`lr_factor`: its state is just the step count."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(spec, total_steps))


# -- devices and precision ----------------------------------------------------------------


def cpu_bf16_flags() -> list[str]:
    """CPU flags that give native bf16 arithmetic (see :mod:`hybridnb.machine`)."""
    from ..machine import cpu_bf16_flags as flags

    return flags()


@dataclass(frozen=True)
class Numerics:
    """Where and how ranks compute: device type, process-group backend, precision."""

    device: str  # "cpu" or "cuda"
    backend: str  # "gloo" or "nccl"
    precision: str  # what runs: fp32, bf16 or fp16 (after any fallback)
    requested: str
    note: str = ""

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @property
    def uses_scaler(self) -> bool:
        # fp16 underflows small gradients without loss scaling; bf16 has fp32's range.
        return self.precision == "fp16"


def resolve_numerics(spec: TrainSpec, *, warn: bool = False) -> Numerics:
    """Pick device, backend and the precision that will really run.

    ``warn=True`` (the launching process) turns a fallback into a ``RuntimeWarning``;
    ranks only log it.
    """
    cuda = cuda_available()
    if spec.device == "cuda" and not cuda:
        raise UsageError("device: cuda was requested but no CUDA GPU is visible; use "
                         "device: auto or cpu")
    device = "cuda" if (spec.device == "cuda" or (spec.device == "auto" and cuda)) else "cpu"
    backend = "nccl" if device == "cuda" else "gloo"
    precision, note = spec.precision, ""
    if (device == "cpu" and precision == "bf16" and not spec.allow_emulated_bf16
            and not cpu_bf16_flags()):
        note = ("this CPU has no native bf16 instructions (avx512_bf16/amx_bf16): "
                "training in fp32 instead; set allow_emulated_bf16: true to force bf16")
        precision = "fp32"
    if device == "cuda" and precision == "bf16" and not _cuda_bf16():
        note, precision = "this GPU does not support bf16: training in fp16 instead", "fp16"
    if note and warn:  # the user sees it once: as a warning where they called fit()
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    elif note:
        logger.warning(note)
    return Numerics(device, backend, precision, spec.precision, note)


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, without importing torch where its build has no GPU.

    The launching process checks a spec before it starts any rank; importing torch there
    only to learn that a CPU-only build sees no GPU cost a first ``fit`` about 1.5 s (the
    ranks import torch themselves).

    >>> cuda_available() in (True, False)
    True
    """
    import sys

    if "torch" not in sys.modules and not torch_build_has_gpu():
        return False
    import torch

    return bool(torch.cuda.is_available())


def torch_build_has_gpu() -> bool:
    """Whether the installed torch was built for CUDA or ROCm (``torch/version.py``).

    Read from the file, not imported: importing ``torch.version`` imports all of torch.
    Unknown (no such file, an unexpected layout) counts as yes, so torch decides.

    >>> import torch
    >>> torch_build_has_gpu() == bool(torch.version.cuda or torch.version.hip)
    True
    """
    import ast
    import importlib.util
    from pathlib import Path

    found = importlib.util.find_spec("torch")
    if found is None or not found.submodule_search_locations:
        return True
    try:
        tree = ast.parse((Path(found.submodule_search_locations[0]) / "version.py").read_text())
    except (OSError, SyntaxError):
        return True
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                continue
    if "cuda" not in values or "hip" not in values:
        return True
    return bool(values["cuda"] or values["hip"])


def _cuda_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())
