"""Distributed PyTorch training: DDP or FSDP, mixed precision, checkpoints, restarts.

Importing this package is cheap; names load their modules on first use (PEP 562), so
torch loads only when training starts.

>>> import hybridnb.train as train
>>> spec = train.TrainSpec(model="digits_cnn", data="digits", optimizer="adam", epochs=15)
>>> result = train.fit(spec, nprocs=2)  # doctest: +SKIP
>>> result.accuracy > 0.97  # doctest: +SKIP
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_LAZY = {
    "TrainSpec": "hybridnb.train.spec:TrainSpec",
    "TrainSpecError": "hybridnb.train.spec:TrainSpecError",
    "load_spec": "hybridnb.train.spec:load_spec",
    "fit": "hybridnb.train.launch:fit",
    "check": "hybridnb.train.launch:check",
    "TrainResult": "hybridnb.train.result:TrainResult",
    "plot_run": "hybridnb.train.metrics:plot_run",
    "read_metrics": "hybridnb.train.metrics:read_metrics",
    "prometheus_text": "hybridnb.train.metrics:prometheus_text",
    "save_checkpoint": "hybridnb.train.checkpoint:save_checkpoint",
    "load_latest": "hybridnb.train.checkpoint:load_latest",
    "known_models": "hybridnb.train.models:known_models",
    "build_model": "hybridnb.train.models:build_model",
    "pytorchjob": "hybridnb.train.k8s:pytorchjob",
}

__all__ = [
    "TrainResult",
    "TrainSpec",
    "TrainSpecError",
    "build_model",
    "check",
    "fit",
    "known_models",
    "load_latest",
    "load_spec",
    "plot_run",
    "prometheus_text",
    "pytorchjob",
    "read_metrics",
    "save_checkpoint",
]

if TYPE_CHECKING:  # pragma: no cover
    from .checkpoint import load_latest, save_checkpoint
    from .k8s import pytorchjob
    from .launch import check, fit
    from .metrics import plot_run, prometheus_text, read_metrics
    from .models import build_model, known_models
    from .result import TrainResult
    from .spec import TrainSpec, TrainSpecError, load_spec


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
