"""Model bundles: a directory an endpoint serves, written from any ``nn.Module``.

A bundle holds

``model.pt2``
    the model exported with ``torch.export`` (dynamic batch dimension), saved with
    ``torch.export.save``: the portable artifact for tools that trust its origin;
``graph.json``
    the same exported graph in a safe JSON form (:mod:`hybridnb.serve.graph`): what
    :func:`load_bundle` runs, because loading ``.pt2`` may unpickle and evaluate code;
``weights.safetensors``
    parameters, buffers and constants;
``hybridnb-model.json``
    name, version, input and output schema (``-1`` marks the batch dimension), labels,
    preprocessing statistics, metrics, per-file SHA-256 digests and a content hash.

The preprocessing is data, never code: elementwise operations with their fitted
parameters (fill missing values, clip, scale; for tables also the column order), as
:mod:`hybridnb.data.preprocessing` defines, validated on load. The bundle applies them
to raw inputs before the model, in every call path (``Bundle.predict``, the Open
Inference Protocol and KServe v1 routes).

>>> import tempfile, torch
>>> path = tempfile.mkdtemp() + "/mlp"
>>> b = bundle(torch.nn.Linear(4, 2), torch.zeros(1, 4), path, name="tiny")
>>> load_bundle(path).input.shape
[-1, 4]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.preprocessing import Preprocessing
from ..errors import OperationError, UsageError
from ..fileio import replace_dir, sha256_file
from .graph import SafeGraph, graph_to_spec

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

FORMAT = "hybridnb-model/1"
META_FILE = "hybridnb-model.json"
GRAPH_FILE = "graph.json"
WEIGHTS_FILE = "weights.safetensors"
PT2_FILE = "model.pt2"
_HASHED = (PT2_FILE, GRAPH_FILE, WEIGHTS_FILE)

#: torch dtype name -> Open Inference Protocol datatype.
DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "bfloat16": "BF16",
             "int64": "INT64", "int32": "INT32", "int16": "INT16", "int8": "INT8",
             "uint8": "UINT8", "bool": "BOOL"}


class BundleError(UsageError):
    """A bundle is missing, incomplete or corrupt; the message names the file."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, Open Inference Protocol datatype and shape (``-1`` = batch) of a tensor."""

    name: str
    datatype: str
    shape: list[int]

    @property
    def dtype(self) -> str:
        """The numpy/torch dtype name (``"float32"``)."""
        return {v: k for k, v in DATATYPES.items()}[self.datatype]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class Bundle:
    """A loaded bundle: its metadata and a callable model.

    Calling it runs the model under ``torch.inference_mode`` after the bundle's
    preprocessing (:attr:`preprocessing`: what the training data's pipeline fitted),
    so it takes raw inputs.
    """

    path: Path
    meta: dict[str, Any]
    model: Callable[[torch.Tensor], torch.Tensor]
    _stats: Preprocessing | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def input(self) -> TensorSpec:
        return TensorSpec(**self.meta["inputs"][0])

    @property
    def output(self) -> TensorSpec:
        return TensorSpec(**self.meta["outputs"][0])

    @property
    def labels(self) -> list[str] | None:
        return self.meta.get("labels")

    @property
    def content_hash(self) -> str:
        return str(self.meta["content_hash"])

    @property
    def preprocessing(self) -> Preprocessing | None:
        """What is applied to raw inputs before the model (``None``: nothing)."""
        return self._stats

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            if self._stats is not None:
                x = self._stats.apply(x)
            return self.model(x)

    def predict(self, x: Any) -> np.ndarray:
        """Run the model on a batch of raw rows (array-like or a DataFrame); return numpy.

        A DataFrame's columns are taken by name, in the order the model was trained on
        when the bundle records it.

        >>> import tempfile, torch
        >>> b = bundle(torch.nn.Linear(3, 2), torch.zeros(1, 3), tempfile.mkdtemp() + "/m")
        >>> b.predict([[0.0, 0.0, 0.0]]).shape
        (1, 2)
        """
        import numpy as np
        import torch

        if self._stats is not None:
            x = self._stats.rows(x)
        array = np.asarray(x, dtype=self.input.dtype)
        if not array.flags.writeable:  # e.g. pandas' copy-on-write arrays: torch warns
            array = array.copy()
        return self(torch.from_numpy(array)).numpy()

    def exported_program(self) -> Any:
        """The ``torch.export.ExportedProgram`` from ``model.pt2``.

        Only for bundles you trust: ``torch.export.load`` may unpickle and evaluate code
        from the file. Serving never calls this.
        """
        import torch

        return torch.export.load(self.path / PT2_FILE)

    def __repr__(self) -> str:
        return (f"Bundle({self.name!r} v{self.version}, {self.input.name}: "
                f"{self.input.datatype}{self.input.shape} -> {self.output.name}: "
                f"{self.output.datatype}{self.output.shape}, {str(self.path)!r})")

    def _repr_html_(self) -> str:
        from html import escape

        rows = [("path", str(self.path)), ("version", self.version),
                ("input", f"{self.input.name}: {self.input.datatype} {self.input.shape}"),
                ("output", f"{self.output.name}: {self.output.datatype} {self.output.shape}"),
                ("labels", ", ".join(self.labels or []) or "—"),
                ("preprocessing", self._stats.describe() if self._stats else "none"),
                ("metrics", json.dumps(self.meta.get("metrics") or {})),
                ("content hash", self.content_hash[:19] + "…")]
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th>"
                       f"<td style='text-align:left'>{escape(v)}</td></tr>" for k, v in rows)
        return f"<b>Bundle {escape(self.name)}</b><table>{body}</table>"


def _content_hash(files: Mapping[str, str]) -> str:
    text = "".join(f"{name}:{files[name]}\n" for name in sorted(files))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def bundle(model: Any, example_input: Any, path: str | os.PathLike[str], *,
           name: str | None = None, labels: Sequence[str] | None = None,
           version: str | int = "1", preprocessing: Mapping[str, Any] | None = None,
           metrics: Mapping[str, Any] | None = None, input_name: str = "input",
           output_name: str = "output", max_batch: int = 1 << 16,
           overwrite: bool = False) -> Bundle:
    """Export ``model`` and write a bundle directory at ``path``; return it loaded.

    Parameters
    ----------
    model:
        Any ``torch.nn.Module`` taking one tensor whose first dimension is the batch.
        It is exported in eval mode (its mode is restored afterwards).
    example_input:
        A batch the model accepts (any batch size); fixes dtype and non-batch dims.
    path:
        The bundle directory; written in a temporary sibling and renamed into place.
    name, version, labels, metrics:
        Metadata for clients (``name`` defaults to the directory name).
    preprocessing:
        What raw inputs need before the model, applied by the bundle in every call
        path: the JSON form of :mod:`hybridnb.data.preprocessing` (what training from a
        prepared dataset passes), or ``{"mean": m, "std": s}`` (broadcast over the
        non-batch dims) for ``(x - mean) / std``. Validated here and on load.
    overwrite:
        Replace an existing bundle at ``path``.

    >>> import tempfile, torch
    >>> b = bundle(torch.nn.Linear(4, 3), torch.zeros(2, 4), tempfile.mkdtemp() + "/m",
    ...            name="demo", labels=["a", "b", "c"])
    >>> b
    Bundle('demo' v1, input: FP32[-1, 4] -> output: FP32[-1, 3], ...)
    """
    import safetensors.torch
    import torch

    target = Path(path)
    if target.exists() and not overwrite:
        raise BundleError(f"{target} already exists; pass overwrite=True to replace it")
    example = torch.as_tensor(example_input)
    if example.dim() < 1 or example.shape[0] < 1:
        raise UsageError(f"example_input must have a batch dimension; got shape "
                         f"{list(example.shape)}")
    dtype = str(example.dtype).removeprefix("torch.")
    if dtype not in DATATYPES:
        raise UsageError(f"example_input dtype {dtype} has no Open Inference Protocol type")
    if labels is not None:
        labels = [str(x) for x in labels]
    stats = _stats_from(preprocessing, example)

    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        # Export with a batch of at least 2: a batch of 1 would be specialized away.
        sample = example if example.shape[0] > 1 else torch.cat([example, example])
        ep = torch.export.export(model, (sample,), dynamic_shapes=({0: batch},))
        with torch.inference_mode():
            expected = model(example if stats is None else stats.apply(example))
    except Exception as exc:
        raise UsageError(f"torch.export could not export the model: {exc}") from exc
    finally:
        model.train(was_training)
    if not isinstance(expected, torch.Tensor) or expected.dim() < 1 \
            or expected.shape[0] != example.shape[0]:
        raise UsageError("the model must return one tensor whose first dimension is the batch")
    spec, tensors = graph_to_spec(ep)
    out_dtype = str(expected.dtype).removeprefix("torch.")
    meta: dict[str, Any] = {
        "format": FORMAT, "name": name or target.name, "version": str(version),
        "created_at": time.time(), "torch_version": torch.__version__,
        "inputs": [{"name": input_name, "datatype": DATATYPES[dtype],
                    "shape": [-1, *example.shape[1:]]}],
        "outputs": [{"name": output_name, "datatype": DATATYPES.get(out_dtype, "FP32"),
                     "shape": [-1, *expected.shape[1:]]}],
        "labels": labels, "preprocessing": None if stats is None else stats.to_json(),
        "metrics": dict(metrics or {}),
    }
    if labels is not None and expected.dim() == 2 and len(labels) != expected.shape[1]:
        raise UsageError(f"{len(labels)} labels for {expected.shape[1]} outputs")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        torch.export.save(ep, tmp / PT2_FILE)
        (tmp / GRAPH_FILE).write_text(json.dumps(spec, indent=1))
        # safetensors wants contiguous, unshared tensors (tied weights are stored twice).
        safetensors.torch.save_file({k: v.contiguous().clone() for k, v in tensors.items()},
                                    tmp / WEIGHTS_FILE)
        meta["files"] = {f: sha256_file(tmp / f) for f in _HASHED}
        meta["content_hash"] = _content_hash(meta["files"])
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        loaded = load_bundle(tmp)
        got = loaded(example)
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            raise OperationError("the exported graph does not reproduce the model's "
                                 "output on example_input")
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote bundle %s (%s)", target, meta["content_hash"][:19])
    return load_bundle(target)


def _stats_from(preprocessing: Mapping[str, Any] | None, example: Any
                ) -> Preprocessing | None:
    """The validated preprocessing for inputs like ``example`` (a batch), or ``None``."""
    stats = Preprocessing.parse(preprocessing, shape=list(example.shape[1:]))
    if stats is not None and stats.ops and not example.dtype.is_floating_point:
        raise UsageError(f"preprocessing needs a floating-point input; the input is "
                         f"{str(example.dtype).removeprefix('torch.')}")
    return stats


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load and validate a bundle directory without unpickling anything.

    Raises :class:`BundleError` naming the file that is missing, unreadable or does not
    match its recorded digest.

    >>> try:
    ...     load_bundle("/nonexistent")
    ... except BundleError as exc:
    ...     print(exc)
    /nonexistent/hybridnb-model.json: no such file; is /nonexistent a model bundle?
    """
    import safetensors
    import safetensors.torch
    import torch

    root = Path(path)
    meta_path = root / META_FILE
    meta = _read_json(meta_path)
    try:
        if meta.get("format") != FORMAT:
            raise BundleError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        for key in ("name", "version", "inputs", "outputs", "files", "content_hash"):
            if key not in meta:
                raise BundleError(f"{meta_path}: missing key {key!r}")
        specs = [TensorSpec(**meta["inputs"][0]), TensorSpec(**meta["outputs"][0])]
        for spec in specs:
            spec.dtype  # noqa: B018 - raises KeyError on an unknown datatype
        files = meta["files"]
        if _content_hash(files) != meta["content_hash"]:
            raise BundleError(f"{meta_path}: content_hash does not match the file digests")
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise BundleError(f"{meta_path}: malformed metadata ({exc!r})") from None
    for name in _HASHED:
        file = root / name
        if not file.is_file():
            raise BundleError(f"{file}: no such file; the bundle is incomplete")
        if name not in files:
            raise BundleError(f"{meta_path}: no digest recorded for {name}")
        if sha256_file(file) != files[name]:
            raise BundleError(f"{file}: contents do not match the digest in {META_FILE} "
                              "(corrupt or modified)")
    graph_spec = _read_json(root / GRAPH_FILE)
    try:
        tensors = safetensors.torch.load_file(root / WEIGHTS_FILE)
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{root / WEIGHTS_FILE}: unreadable safetensors ({exc})") from None
    try:
        graph = SafeGraph(graph_spec, tensors)
    except UsageError as exc:
        raise BundleError(f"{root / GRAPH_FILE}: {exc}") from None
    try:
        stats = _stats_from(meta.get("preprocessing"), torch.zeros(
            [2, *specs[0].shape[1:]], dtype=getattr(torch, specs[0].dtype)))
    except UsageError as exc:
        raise BundleError(f"{meta_path}: {exc}") from None
    loaded = Bundle(path=root, meta=meta, model=graph, _stats=stats)
    _smoke_test(loaded)
    return loaded


def _smoke_test(b: Bundle) -> None:
    import torch

    x = torch.zeros([2, *b.input.shape[1:]], dtype=getattr(torch, b.input.dtype))
    try:
        y = b(x)
    except Exception as exc:
        raise BundleError(f"{b.path / GRAPH_FILE}: the graph fails on a zero input: "
                          f"{exc}") from None
    if list(y.shape[1:]) != b.output.shape[1:] or y.shape[0] != 2:
        raise BundleError(f"{b.path / META_FILE}: output shape {list(y.shape)} does not "
                          f"match the declared {b.output.shape}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file; is {path.parent} a model bundle?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return data
