"""Wire formats: Open Inference Protocol v2 (JSON, with Triton's binary tensor extension)
and KServe v1; parsing validates against the bundle's schema.

Every problem with a request is an :class:`HTTPError` with a 4xx status and a message
that names the field: 400 for a malformed request, 422 for one that does not fit the
model, 413 for one too large.

>>> from hybridnb.serve.model_bundle import TensorSpec
>>> spec = TensorSpec("input", "FP32", [-1, 2])
>>> req = parse_infer(b'{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32",'
...                   b'"data":[1,2]}]}', None, spec, TensorSpec("output", "FP32", [-1, 1]))
>>> req.x.shape
(1, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from .model_bundle import TensorSpec

_NP = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
       "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8,
       "BOOL": np.bool_}
#: numpy kinds a JSON array may hold for each datatype family (no strings, no objects).
_KINDS = {"BOOL": "b"}
_NUMERIC = "iuf"


class HTTPError(Exception):
    """An answer other than 200: status, message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class InferRequest:
    """A validated inference request."""

    x: np.ndarray
    id: str | None = None
    binary_output: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def loads(body: bytes) -> Any:
    """Parse JSON; a 400 naming the problem if it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"the request body is not valid JSON: {exc}") from None


def to_array(data: Any, spec: TensorSpec, what: str) -> np.ndarray:
    """Turn JSON numbers (flat or nested) into an array of ``spec``'s dtype."""
    if not isinstance(data, list):
        raise HTTPError(400, f"{what} must be a JSON array of numbers")
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise HTTPError(422, f"{what} is not a regular array of numbers (ragged or "
                             "mixed nesting)") from None
    allowed = _KINDS.get(spec.datatype, _NUMERIC)
    if raw.size and raw.dtype.kind not in allowed:
        raise HTTPError(422, f"{what} must hold only numbers of datatype {spec.datatype}")
    with np.errstate(all="ignore"):  # overflow to inf is checked below, not warned about
        try:
            arr: np.ndarray = raw.astype(_NP[spec.datatype], copy=False)
        except (ValueError, TypeError, OverflowError):
            raise HTTPError(422, f"{what} has values that do not fit {spec.datatype}") from None
    return _finite(arr, spec, what)


def _finite(arr: np.ndarray, spec: TensorSpec, what: str) -> np.ndarray:
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise HTTPError(422, f"{what} contains NaN or infinity, or values too large for "
                             f"{spec.datatype}")
    return arr


def _check_shape(shape: Any, spec: TensorSpec, what: str) -> list[int]:
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise HTTPError(400, f"{what}: 'shape' must be a list of integers")
    want = spec.shape
    if len(shape) != len(want) or shape[0] < 1 or any(
            d != w for d, w in zip(shape[1:], want[1:], strict=True)):
        raise HTTPError(422, f"{what}: shape {shape} does not fit the model's {want} "
                             "(-1 is the batch dimension, at least 1)")
    return shape


def parse_infer(body: bytes, header_length: str | None, spec: TensorSpec,
                out_spec: TensorSpec) -> InferRequest:
    """Validate an OIP v2 infer request (JSON, or JSON + binary tensor data)."""
    raw_tail = b""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise HTTPError(400, "Inference-Header-Content-Length is not an integer") from None
        if not 0 < n <= len(body):
            raise HTTPError(400, "Inference-Header-Content-Length is outside the body")
        body, raw_tail = body[:n], body[n:]
    req = loads(body)
    if not isinstance(req, dict):
        raise HTTPError(400, "the request must be a JSON object with 'inputs'")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise HTTPError(400, f"'inputs' must be a list with one tensor, {spec.name!r}")
    item = inputs[0]
    name = item.get("name")
    if name != spec.name:
        raise HTTPError(422, f"unknown input {name!r}; the model takes {spec.name!r}")
    what = f"input {spec.name!r}"
    if item.get("datatype") != spec.datatype:
        raise HTTPError(422, f"{what}: datatype {item.get('datatype')!r}; the model takes "
                             f"{spec.datatype!r}")
    shape = _check_shape(item.get("shape"), spec, what)
    count = math.prod(shape)
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise HTTPError(400, f"{what}: 'parameters' must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        itemsize = np.dtype(_NP[spec.datatype]).itemsize
        if not isinstance(size, int) or size != count * itemsize or size != len(raw_tail):
            raise HTTPError(400, f"{what}: binary_data_size {size!r} does not match shape "
                                 f"{shape} ({count * itemsize} bytes) or the body")
        x = _finite(np.frombuffer(raw_tail, dtype=_NP[spec.datatype]).reshape(shape), spec,
                    what)
    else:
        if raw_tail:
            raise HTTPError(400, "binary data follows the header but no input claims it")
        x = to_array(item.get("data"), spec, f"{what} 'data'")
        if x.size != count:
            raise HTTPError(422, f"{what}: {x.size} values, but shape {shape} needs {count}")
        x = x.reshape(shape)
    binary = _binary_output(req, out_spec)
    rid = req.get("id")
    return InferRequest(x=x, id=rid if isinstance(rid, str) else None, binary_output=binary)


def _binary_output(req: dict[str, Any], out_spec: TensorSpec) -> bool:
    params = req.get("parameters") or {}
    binary = bool(params.get("binary_data_output")) if isinstance(params, dict) else False
    outputs = req.get("outputs")
    if outputs is None:
        return binary
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise HTTPError(400, "'outputs' must be a list of objects")
    for out in outputs:
        if out.get("name") != out_spec.name:
            raise HTTPError(422, f"unknown output {out.get('name')!r}; the model has "
                                 f"{out_spec.name!r}")
        p = out.get("parameters") or {}
        if isinstance(p, dict) and "binary_data" in p:
            binary = bool(p["binary_data"])
    return binary


def infer_response(model: str, version: str, out_spec: TensorSpec, y: np.ndarray,
                   req: InferRequest) -> tuple[bytes, dict[str, str]]:
    """The body and extra headers of an OIP v2 infer response."""
    tensor: dict[str, Any] = {"name": out_spec.name, "datatype": out_spec.datatype,
                              "shape": list(y.shape)}
    doc: dict[str, Any] = {"model_name": model, "model_version": version}
    if req.id is not None:
        doc["id"] = req.id
    doc["outputs"] = [tensor]
    if req.binary_output:
        raw = np.ascontiguousarray(y).tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        head = orjson.dumps(doc)
        return head + raw, {"Inference-Header-Content-Length": str(len(head))}
    tensor["data"] = y.ravel()
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), {}


def parse_v1(body: bytes, spec: TensorSpec) -> np.ndarray:
    """Validate a KServe v1 ``{"instances": [...]}`` request; return the batch."""
    req = loads(body)
    if not isinstance(req, dict) or not isinstance(req.get("instances"), list):
        raise HTTPError(400, "the request must be a JSON object with 'instances': [...]")
    x = to_array(req["instances"], spec, "'instances'")
    _check_shape(list(x.shape), spec, "'instances'")
    return x


def v1_response(y: np.ndarray) -> bytes:
    """The body of a KServe v1 predict response."""
    return orjson.dumps({"predictions": y}, option=orjson.OPT_SERIALIZE_NUMPY)
