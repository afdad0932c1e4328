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
import stat
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..data.preprocessing import Preprocessing
from ..errors import OperationError, UsageError
from ..fileio import replace_dir, sha256_file
from .graph import SafeGraph, expected_tensors, graph_to_spec
from .graph_policy import GraphLimits

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


def load_bundle(path: str | os.PathLike[str], *, limits: GraphLimits | None = None) -> Bundle:
    """Load and validate a bundle directory without unpickling anything.

    Loading is as safe as loading safetensors: every file must be a regular file inside
    the bundle directory, within a size limit, matching its recorded digest; the
    metadata must have the documented shape; the graph may call only the operators and
    arguments :mod:`hybridnb.serve.graph_policy` allows, within its limits (checked for
    every batch size before anything runs); the stored tensors must be exactly the ones
    the graph declares. Raises :class:`BundleError` naming the file (and for the graph
    the node, operator and argument) that is refused.

    ``limits`` raises the caps (:class:`~hybridnb.serve.graph_policy.GraphLimits`) for a
    bundle you trust that needs more; the defaults suit untrusted bundles.

    >>> try:
    ...     load_bundle("/nonexistent")
    ... except BundleError as exc:
    ...     print(exc)
    /nonexistent/hybridnb-model.json: no such file; is /nonexistent a model bundle?
    """
    import torch

    limits = limits or GraphLimits()
    data_limit = limits.max_constant_bytes + _DATA_SLACK
    root = Path(path)
    meta_path = root / META_FILE
    meta = _read_json(root, META_FILE)
    specs = _check_meta(meta, meta_path)
    files = meta["files"]
    graph_bytes = b""
    for name in _HASHED:
        if name == GRAPH_FILE:
            graph_bytes = _read_member(root, name, MAX_JSON_BYTES)
            digest = hashlib.sha256(graph_bytes).hexdigest()
        else:
            digest = _digest_member(root, name, data_limit)
        if name not in files:
            raise BundleError(f"{meta_path}: no digest recorded for {name}")
        if digest != files[name]:
            raise BundleError(f"{root / name}: contents do not match the digest in "
                              f"{META_FILE} (corrupt or modified)")
    graph_spec = _parse_json(graph_bytes, root / GRAPH_FILE)
    try:
        expected = expected_tensors(graph_spec, limits)
    except UsageError as exc:
        raise BundleError(f"{root / GRAPH_FILE}: {exc}") from None
    tensors = _load_weights(root, expected, data_limit)
    try:
        graph = SafeGraph(graph_spec, tensors, input_shape=specs[0].shape,
                          input_dtype=specs[0].dtype, limits=limits)
    except UsageError as exc:
        raise BundleError(f"{root / GRAPH_FILE}: {exc}") from None
    if graph.output_shape != specs[1].shape:
        raise BundleError(f"{meta_path}: the graph's output is {graph.output_shape}, the "
                          f"metadata declares {specs[1].shape}")
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


#: Size limits of a bundle's files: its JSON; its weights and exported program may hold
#: the graph limits' stored tensors plus this much (headers, code).
MAX_JSON_BYTES = 16 << 20
_DATA_SLACK = 256 << 20
#: safetensors dtype codes -> torch dtype names.
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
              "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
              "BOOL": "bool", "C64": "complex64", "C128": "complex128"}


def _open_member(root: Path, name: str, limit: int) -> tuple[BinaryIO, Path]:
    """Open ``root/name`` for reading: a regular file inside ``root``, at most ``limit``.

    Symlinks are followed only to files inside the bundle directory; FIFOs and devices
    are refused without blocking (O_NONBLOCK) rather than read forever.
    """
    path = root / name
    try:
        real = path.resolve(strict=True)
        inside = real.is_relative_to(root.resolve(strict=True))
    except FileNotFoundError:
        if name == META_FILE:
            raise BundleError(f"{path}: no such file; is {root} a model bundle?") from None
        raise BundleError(f"{path}: no such file; the bundle is incomplete") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission error
        raise BundleError(f"{path}: cannot be opened ({exc})") from None
    if not inside:
        raise BundleError(f"{path}: links to {real}, outside the bundle directory; a "
                          "bundle's files must be inside it")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise BundleError(f"{path}: cannot be opened ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BundleError(f"{path}: not a regular file (a directory, device or pipe)")
    if info.st_size > limit:
        os.close(fd)
        raise BundleError(f"{path}: {info.st_size} bytes, more than the {limit} a bundle's "
                          f"{name} may have")
    return os.fdopen(fd, "rb"), real


def _read_member(root: Path, name: str, limit: int) -> bytes:
    fh, _ = _open_member(root, name, limit)
    with fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise BundleError(f"{root / name}: unreadable ({exc.strerror})") from None
    if len(data) > limit:
        raise BundleError(f"{root / name}: more than the {limit} bytes a bundle's {name} "
                          "may have")
    return data


def _digest_member(root: Path, name: str, limit: int) -> str:
    fh, _ = _open_member(root, name, limit)
    digest, size = hashlib.sha256(), 0
    with fh:
        try:
            for block in iter(lambda: fh.read(1 << 20), b""):
                size += len(block)
                if size > limit:
                    raise BundleError(f"{root / name}: more than the {limit} bytes a "
                                      f"bundle's {name} may have")
                digest.update(block)
        except OSError as exc:
            raise BundleError(f"{root / name}: unreadable ({exc.strerror})") from None
    return digest.hexdigest()


def _parse_json(data: bytes, path: Path) -> dict[str, Any]:
    try:
        parsed = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise BundleError(f"{path}: unreadable JSON (nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, huge integers
        raise BundleError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return parsed


def _read_json(root: Path, name: str) -> dict[str, Any]:
    return _parse_json(_read_member(root, name, MAX_JSON_BYTES), root / name)


def _tensor_spec(value: Any, where: str) -> TensorSpec:
    if not isinstance(value, dict) or set(value) != {"name", "datatype", "shape"}:
        raise BundleError(f"{where}: expected {{'name', 'datatype', 'shape'}}, got "
                          f"{str(value)[:80]}")
    shape = value["shape"]
    if not isinstance(value["name"], str) or value["datatype"] not in DATATYPES.values():
        raise BundleError(f"{where}: the name must be a string and the datatype one of "
                          f"{', '.join(DATATYPES.values())}")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 16 or shape[0] != -1 or any(
            type(d) is not int or d < 1 for d in shape[1:]):
        raise BundleError(f"{where}: shape {repr(shape)[:80]}; expected -1 (the batch) and "
                          "positive sizes")
    return TensorSpec(**value)


def _check_meta(meta: dict[str, Any], meta_path: Path) -> tuple[TensorSpec, TensorSpec]:
    if meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: format {str(meta.get('format'))[:40]!r}, expected "
                          f"{FORMAT!r}")
    for key in ("name", "version", "inputs", "outputs", "files", "content_hash"):
        if key not in meta:
            raise BundleError(f"{meta_path}: missing key {key!r}")
    for key in ("inputs", "outputs"):
        if not isinstance(meta[key], list) or len(meta[key]) != 1:
            raise BundleError(f"{meta_path}: {key!r} must list exactly one tensor")
    specs = (_tensor_spec(meta["inputs"][0], f"{meta_path}: inputs[0]"),
             _tensor_spec(meta["outputs"][0], f"{meta_path}: outputs[0]"))
    files = meta["files"]
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise BundleError(f"{meta_path}: 'files' must map file names to SHA-256 digests")
    if not isinstance(meta["content_hash"], str) or _content_hash(files) != meta["content_hash"]:
        raise BundleError(f"{meta_path}: content_hash does not match the file digests")
    labels = meta.get("labels")
    if labels is not None and not (isinstance(labels, list)
                                   and all(isinstance(x, str) for x in labels)):
        raise BundleError(f"{meta_path}: 'labels' must be a list of strings or null")
    return specs


def _load_weights(root: Path, expected: Mapping[str, tuple[str, list[int]]], limit: int
                  ) -> dict[str, torch.Tensor]:
    """Check the safetensors header against what the graph declares, then load."""
    import safetensors

    path = root / WEIGHTS_FILE
    fh, real = _open_member(root, WEIGHTS_FILE, limit)
    fh.close()
    try:
        with safetensors.safe_open(str(real), framework="pt") as f:
            keys = set(f.keys())
            for key in sorted(keys - set(expected)):
                raise BundleError(f"{path}: tensor {key[:80]!r} is not used by the graph; "
                                  "remove it")
            for key, (dtype, shape) in expected.items():
                if key not in keys:
                    raise BundleError(f"{path}: tensor {key!r} is missing (the graph uses it)")
                piece = f.get_slice(key)
                got = (_ST_DTYPES.get(piece.get_dtype(), piece.get_dtype()), piece.get_shape())
                if got != (dtype, shape):
                    raise BundleError(f"{path}: tensor {key!r} is {got[0]}{got[1]}, the "
                                      f"graph expects {dtype}{shape}")
            return {key: f.get_tensor(key) for key in expected}
    except BundleError:
        raise
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: unreadable safetensors ({exc})") from None
