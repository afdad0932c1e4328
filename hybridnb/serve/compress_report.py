"""The compression report, and the evaluation data, scores and latency it holds.

Used by :func:`hybridnb.serve.compress`.

>>> import numpy as np, tempfile, torch
>>> from hybridnb.serve.model_bundle import bundle
>>> b = bundle(torch.nn.Linear(4, 3), torch.zeros(1, 4), tempfile.mkdtemp() + "/m")
>>> x, y, where = eval_arrays((np.zeros((5, 4)), np.zeros(5, dtype=int)), b)
>>> x.shape, where
((5, 4), 'eval_data')
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from .model_bundle import Bundle


@dataclass
class CompressionReport:
    """What :func:`compress` did and measured: before (source) against after (new bundle).

    ``accuracy`` is ``{"before", "after"}`` on the evaluation data (``metric`` names it:
    ``accuracy`` for class labels, ``mae`` otherwise), ``agreement`` the fraction of rows
    whose predicted class is unchanged; ``size_bytes`` and ``latency_p50_ms`` (per batch
    size, of one call of the loaded model as the server makes it) likewise.
    """

    source: str
    path: str
    name: str
    version_before: str
    version_after: str
    quantize: str | None
    prune: float | None
    prune_scope: str
    quantized: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sparsity: dict[str, float] = field(default_factory=dict)
    total_sparsity: float | None = None
    size_bytes: dict[str, int] = field(default_factory=dict)
    metric: str | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    agreement: float | None = None
    eval_rows: int = 0
    eval_source: str | None = None
    latency_p50_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    repeats: int = 0
    torch_threads: int = 0

    @property
    def size_ratio(self) -> float:
        """New size on disk over the source's."""
        return self.size_bytes["after"] / self.size_bytes["before"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what ``hybridnb-model.json`` stores under ``compression``)."""
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        rows = [
            ("bundle", f"{self.path} (v{self.version_after}, from v{self.version_before})"),
            (
                "quantize",
                f"{self.quantize or '—'}: {len(self.quantized)} Linear layer(s)"
                + (f", skipped {', '.join(self.skipped)}" if self.skipped else ""),
            ),
            (
                "prune",
                "—"
                if self.prune is None
                else f"{self.prune:g} ({self.prune_scope}), real sparsity "
                f"{self.total_sparsity:.3f} over {len(self.sparsity)} weight(s)",
            ),
            (
                "size",
                f"{self.size_bytes['before']:,} → {self.size_bytes['after']:,} bytes "
                f"(×{self.size_ratio:.2f}; weights {self.size_bytes['weights_before']:,} → "
                f"{self.size_bytes['weights_after']:,})",
            ),
        ]
        if self.metric:
            rows.append(
                (
                    self.metric,
                    f"{self.accuracy['before']:.4f} → "
                    f"{self.accuracy['after']:.4f} on {self.eval_rows} rows of "
                    f"{self.eval_source}"
                    + ("" if self.agreement is None else f", agreement {self.agreement:.4f}"),
                )
            )
        for batch, lat in self.latency_p50_ms.items():
            rows.append((f"p50 batch {batch}", f"{lat['before']:.3f} → {lat['after']:.3f} ms"))
        return rows

    def __repr__(self) -> str:
        body = "".join(f"\n  {k}: {v}" for k, v in self.rows())
        return f"CompressionReport({self.name!r}{body})"

    def _repr_html_(self) -> str:
        from html import escape

        body = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th>"
            f"<td style='text-align:left'>{escape(v)}</td></tr>"
            for k, v in self.rows()
        )
        return f"<b>Compression of {escape(self.name)}</b><table>{body}</table>"


def eval_arrays(data: Any, b: Bundle) -> tuple[np.ndarray, np.ndarray, str]:
    """``(x, y, description)`` from ``(x, y)``, ``"digits"`` or a prepared data directory.

    ``x`` must fit the bundle's input schema; a built-in or prepared dataset is reshaped
    to it when only the layout differs (digits are 8×8 images, an MLP may take 64).
    """
    import numpy as np

    if isinstance(data, str) and data == "digits":
        return _digits_test_split(b)
    if isinstance(data, (str, Path)):
        return _prepared_test_split(Path(data), b)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise UsageError(
            "eval_data: expected (x, y) arrays, 'digits' or a prepared data "
            f"directory; got {type(data).__name__}"
        )
    try:
        x = np.asarray(data[0], dtype=b.input.dtype)
        y = np.asarray(data[1])
    except (TypeError, ValueError) as exc:
        raise UsageError(f"eval_data: x or y is not a numeric array ({exc})") from None
    if x.ndim < 1 or list(x.shape[1:]) != b.input.shape[1:]:
        raise UsageError(
            f"eval_data: x has shape {list(x.shape)} but the bundle's input "
            f"{b.input.name!r} is {b.input.datatype}{b.input.shape} (-1 = any "
            "batch size); reshape x to match"
        )
    if y.ndim < 1 or len(y) != len(x) or len(x) == 0:
        raise UsageError(
            f"eval_data: y has {len(y) if y.ndim else 0} rows and x has "
            f"{len(x)}; give one label (or target) per row, at least one row"
        )
    return x, y, "eval_data"


def _digits_test_split(b: Bundle) -> tuple[np.ndarray, np.ndarray, str]:
    """The digits ``hybridnb train`` holds out by default (same fraction, seed, strata)."""
    from ..data.digits_split import digits_split

    images, labels, parts = digits_split()
    test = parts["test"]
    x = _fit(images[test], b, "digits")
    return x, labels[test], f"digits (the {len(test)} images hybridnb train holds out)"


def _prepared_test_split(path: Path, b: Bundle) -> tuple[np.ndarray, np.ndarray, str]:
    """The ``test`` split of a ``hybridnb data prepare`` output, as raw inputs."""
    import numpy as np

    from ..data.loader import ShardLoader
    from ..data.preprocessing import from_manifest
    from ..data.shards import read_manifest

    manifest = read_manifest(path)
    parts = [(xb.numpy(), yb.numpy()) for xb, yb in ShardLoader(manifest, "test", batch_size=4096)]
    if not parts:
        raise UsageError(f"eval_data={str(path)!r}: the test split is empty")
    # Shards hold transformed values; bundles take raw inputs (clients send raw, the
    # bundle applies the same transform), so undo the pipeline's per-row transform.
    x = from_manifest(manifest).invert(np.concatenate([p[0] for p in parts]))
    y = np.concatenate([p[1] for p in parts])
    return _fit(x, b, str(path)), y, f"{path} (test split)"


def _fit(x: np.ndarray, b: Bundle, name: str) -> np.ndarray:
    dims = b.input.shape[1:]
    if int(x[0].size) != int(_prod(dims)):
        raise UsageError(
            f"eval_data={name!r}: samples of shape {list(x.shape[1:])} do not "
            f"fit the bundle's input {b.input.name!r} {b.input.shape}"
        )
    return x.reshape([len(x), *dims]).astype(b.input.dtype)


def _prod(dims: Sequence[int]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def _outputs(b: Bundle, x: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.concatenate([b.predict(x[i : i + 1024]) for i in range(0, len(x), 1024)])


def score(
    before: Bundle, after: Bundle, x: np.ndarray, y: np.ndarray
) -> tuple[str, float, float, float | None]:
    """``(metric, before, after, agreement)``: accuracy for class labels, else MAE."""
    import numpy as np

    a, c = _outputs(before, x), _outputs(after, x)
    classes = a.shape[1] if a.ndim == 2 else 0
    if np.issubdtype(y.dtype, np.integer) and y.ndim == 1 and classes > 1:
        if y.min() < 0 or y.max() >= classes:
            raise UsageError(
                f"eval_data: y holds labels outside 0..{classes - 1}, the "
                f"bundle's {before.output.name!r} has {classes} classes"
            )
        pa, pc = a.argmax(1), c.argmax(1)
        return (
            "accuracy",
            float((pa == y).mean()),
            float((pc == y).mean()),
            float((pa == pc).mean()),
        )
    if y.shape != a.shape:
        raise UsageError(
            f"eval_data: y has shape {list(y.shape)}; integer class labels or "
            f"targets shaped like the output {list(a.shape)} are needed"
        )
    return ("mae", float(np.abs(a - y).mean()), float(np.abs(c - y).mean()), None)


def latency_p50(
    before: Bundle, after: Bundle, batch_sizes: Sequence[int], repeats: int, x: np.ndarray | None
) -> dict[str, dict[str, float]]:
    """Median milliseconds of one model call per batch size, before and after.

    The two bundles alternate call by call (which goes first alternates too) after a
    warm-up, so drift on a busy machine hits both alike.
    """
    import torch

    out: dict[str, dict[str, float]] = {}
    dtype = getattr(torch, before.input.dtype)
    for size in batch_sizes:
        if x is not None:
            rows = torch.as_tensor(x[: max(1, min(size, len(x)))])
            batch = rows.repeat(-(-size // len(rows)), *([1] * (rows.dim() - 1)))[:size]
        else:
            batch = torch.zeros([size, *before.input.shape[1:]], dtype=dtype)
        times: dict[str, list[float]] = {"before": [], "after": []}
        pair = (("before", before), ("after", after))
        for _ in range(3):
            for _, b in pair:
                b(batch)
        for i in range(repeats):
            for side, b in pair if i % 2 == 0 else pair[::-1]:
                start = time.perf_counter()
                b(batch)
                times[side].append((time.perf_counter() - start) * 1e3)
        out[str(size)] = {side: sorted(t)[len(t) // 2] for side, t in times.items()}
    return out
