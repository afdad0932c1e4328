"""Compress a bundle into a new bundle: int8 Linear weights, magnitude pruning, a report.

The new bundle is an ordinary one (``torch.export`` program, safetensors, safe graph):
the transforms in :mod:`hybridnb.serve.compress_graph` rewrite the source bundle's safe
graph, a small module runs that graph, and :func:`hybridnb.serve.bundle` exports
and writes it. The :class:`CompressionReport` (accuracy on held-out data, size on disk,
latency per batch size, sparsity) is stored in the new ``hybridnb-model.json`` under
``compression``.

>>> import tempfile, torch
>>> from hybridnb.serve.model_bundle import bundle
>>> tmp = tempfile.mkdtemp()
>>> src = bundle(torch.nn.Linear(64, 10), torch.zeros(1, 64), tmp + "/fp32", name="m")
>>> report = compress(src, tmp + "/int8", quantize="int8", repeats=3, batch_sizes=(4,))
>>> report.version_after, report.size_ratio < 1
('1+int8', True)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..fileio import atomic_write_json, replace_dir
from . import compress_graph as cg
from .compress_report import CompressionReport, eval_arrays, latency_p50, score
from .model_bundle import GRAPH_FILE, META_FILE, WEIGHTS_FILE, Bundle, bundle, load_bundle

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def compress(
    source: Bundle | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    quantize: str | None = "int8",
    prune: float | None = None,
    prune_scope: str = "layer",
    eval_data: Any = None,
    batch_sizes: Sequence[int] = (1, 32, 256),
    repeats: int = 30,
    version: str | None = None,
    overwrite: bool = False,
) -> CompressionReport:
    """Write a compressed copy of the bundle ``source`` at ``out``; return the report.

    Parameters
    ----------
    source:
        A bundle directory or a loaded :class:`~hybridnb.serve.model_bundle.Bundle`.
    out:
        The new bundle's directory (written beside it, then renamed into place).
    quantize:
        ``"int8"`` (int8 weights, float compute), ``"int8-dynamic"`` (int8 activations
        and weights through ``aten._int_mm``; see :mod:`hybridnb.serve.compress_graph`),
        or ``None``. Only Linear layers are quantized.
    prune:
        Fraction in ``[0, 1)`` of Linear and convolution weights to zero by magnitude,
        or ``None``. Zeros are stored densely: pruning alone does not shrink the files.
    prune_scope:
        ``"layer"`` (each weight to ``prune``) or ``"global"`` (ranked together).
    eval_data:
        Held-out ``(x, y)`` arrays, ``"digits"`` (the 360 scikit-learn digits that
        ``hybridnb train`` holds out by default) or a prepared data directory (its
        ``test`` split, unscaled to raw inputs); ``None`` skips accuracy.
    batch_sizes, repeats:
        Latency is the median of ``repeats`` alternating before/after calls per size.
    version:
        The new bundle's version (default ``"<old>+int8"``, ``"<old>+pruned50"``, ...).
    overwrite:
        Replace an existing bundle at ``out``.

    >>> try:
    ...     compress("/nonexistent", "/tmp/x", quantize="int4")
    ... except UsageError as exc:
    ...     print(exc)
    quantize='int4' is not a mode; use one of 'int8', 'int8-dynamic' or None
    """
    import safetensors.torch

    _check_args(quantize, prune, prune_scope, batch_sizes, repeats)
    src = source if isinstance(source, Bundle) else load_bundle(source)
    target = Path(out)
    if target.resolve() == src.path.resolve():
        raise UsageError(f"out={str(target)!r} is the source bundle; choose a new directory")
    if target.exists() and not overwrite:
        raise UsageError(
            f"out={str(target)!r} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    evaluation = eval_arrays(eval_data, src) if eval_data is not None else None

    spec = json.loads((src.path / GRAPH_FILE).read_text())
    tensors = safetensors.torch.load_file(src.path / WEIGHTS_FILE)
    report = CompressionReport(
        source=str(src.path),
        path=str(target),
        name=src.name,
        version_before=src.version,
        version_after="",
        quantize=quantize,
        prune=prune,
        prune_scope=prune_scope,
        repeats=repeats,
    )
    spec, tensors = _transform(spec, tensors, report)
    tags = ([quantize.replace("-dynamic", "dyn")] if quantize else []) + (
        [f"pruned{round(prune * 100)}"] if prune else []
    )
    report.version_after = version or f"{src.version}+{'.'.join(tags)}"

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        new = _write(src, spec, tensors, tmp, report.version_after)
        _measure(src, new, evaluation, batch_sizes, repeats, report)
        meta = dict(new.meta, compression=report.to_dict())
        atomic_write_json(tmp / META_FILE, meta)
        load_bundle(tmp)  # the metadata is not in the content hash; check it still loads
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("compressed %s into %s (size ×%.2f)", src.path, target, report.size_ratio)
    return report


def _check_args(
    quantize: str | None, prune: float | None, scope: str, batch_sizes: Sequence[int], repeats: int
) -> None:
    if quantize is not None and quantize not in cg.QUANT_MODES:
        raise UsageError(
            f"quantize={quantize!r} is not a mode; use one of "
            f"{', '.join(map(repr, cg.QUANT_MODES))} or None"
        )
    if prune is not None and (
        isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0 <= prune < 1
    ):
        raise UsageError(
            f"prune={prune!r}: expected the fraction of weights to zero, in [0, 1) (e.g. 0.5)"
        )
    if scope not in cg.PRUNE_SCOPES:
        raise UsageError(f"prune_scope={scope!r}: use 'layer' or 'global'")
    if quantize is None and not prune:
        raise UsageError("nothing to do: ask for quantize (int8) and/or prune (a fraction)")
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise UsageError(f"batch_sizes={list(batch_sizes)!r}: expected positive integers")
    if not isinstance(repeats, int) or repeats < 1:
        raise UsageError(f"repeats={repeats!r}: expected a positive integer")


def _transform(
    spec: dict[str, Any], tensors: dict[str, torch.Tensor], report: CompressionReport
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if report.prune:
        keys = sorted(set(cg.weight_nodes(spec, {cg.LINEAR, *cg.CONVS}).values()))
        if not keys:
            raise UsageError(f"bundle {report.source}: no Linear or convolution weights to prune")
        tensors, report.sparsity = cg.prune(tensors, keys, report.prune, report.prune_scope)
        zeros = sum(report.sparsity[k] * tensors[k].numel() for k in keys)
        report.total_sparsity = zeros / sum(tensors[k].numel() for k in keys)
    if report.quantize:
        spec, tensors, report.quantized, report.skipped = cg.quantize(
            spec, tensors, report.quantize
        )
        if not report.quantized:
            why = (
                f" ({', '.join(report.skipped)} are shared with other operators or not 2-D float)"
                if report.skipped
                else ""
            )
            raise UsageError(
                f"bundle {report.source}: no Linear layer to quantize{why}; "
                "int8 quantization covers Linear layers only (convolutions "
                "can be pruned: quantize=None, prune=0.5)"
            )
    return spec, tensors


def _graph_module(spec: dict[str, Any], tensors: dict[str, torch.Tensor], src: Bundle
                  ) -> torch.nn.Module:
    """A module that runs ``spec`` on its buffers, so ``torch.export`` can trace it."""
    import torch

    from .graph import SafeGraph

    # Checked here, once, as loading checks it; the traced forward runs the same steps.
    graph = SafeGraph(spec, tensors, input_shape=src.input.shape,
                      input_dtype=src.input.dtype, fold=False)

    class GraphModule(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return graph.run_with({k: self.get_buffer(k) for k in tensors}, x)

    module = GraphModule()
    for key, value in tensors.items():
        # Nested submodules keep the source's names ("3.weight") in the new bundle.
        *path, leaf = key.split(".")
        owner = module
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, torch.nn.Module())
            owner = getattr(owner, part)
        owner.register_buffer(leaf, value)
    return module


def _write(
    src: Bundle, spec: dict[str, Any], tensors: dict[str, torch.Tensor], tmp: Path, version: str
) -> Bundle:
    import torch

    from ..errors import HybridnbError

    dtype = getattr(torch, src.input.dtype)
    shape = [2, *src.input.shape[1:]]
    gen = torch.Generator().manual_seed(0)
    example = (
        torch.randn(shape, generator=gen).to(dtype)
        if dtype.is_floating_point
        else torch.zeros(shape, dtype=dtype)
    )
    try:
        return bundle(
            _graph_module(spec, tensors, src),
            example,
            tmp,
            name=src.name,
            labels=src.labels,
            version=version,
            preprocessing=src.meta.get("preprocessing"),
            metrics=src.meta.get("metrics"),
            input_name=src.input.name,
            output_name=src.output.name,
        )
    except HybridnbError as exc:
        if "_int_mm" in str(exc) or "int8" in str(exc):
            raise UsageError(
                f"quantize='int8-dynamic' needs 2-D inputs to every Linear "
                f"layer (flatten first) or use quantize='int8': {exc}"
            ) from None
        raise


def _measure(
    src: Bundle,
    new: Bundle,
    evaluation: tuple[Any, Any, str] | None,
    batch_sizes: Sequence[int],
    repeats: int,
    report: CompressionReport,
) -> None:
    import torch

    report.size_bytes = {
        "before": _dir_size(src.path),
        "after": _dir_size(new.path),
        "weights_before": (src.path / WEIGHTS_FILE).stat().st_size,
        "weights_after": (new.path / WEIGHTS_FILE).stat().st_size,
    }
    report.torch_threads = torch.get_num_threads()
    if evaluation is not None:
        x, y, report.eval_source = evaluation
        report.eval_rows = len(y)
        report.metric, before, after, report.agreement = score(src, new, x, y)
        report.accuracy = {"before": before, "after": after}
    started = time.perf_counter()
    report.latency_p50_ms = latency_p50(
        src, new, batch_sizes, repeats, evaluation[0] if evaluation else None
    )
    logger.debug("latency measured in %.1f s", time.perf_counter() - started)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
