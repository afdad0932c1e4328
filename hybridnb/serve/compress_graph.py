"""Compression transforms on a bundle's safe graph: magnitude pruning and int8 weights.

They take ``(spec, tensors)`` as :func:`hybridnb.serve.graph.graph_to_spec` makes them and
return new ones, built only from ATen operators the safe interpreter already runs, so a
compressed bundle is an ordinary bundle. :func:`hybridnb.serve.compress` wraps
them; these are the pure parts, testable without writing files.

Quantization covers Linear layers (``aten.linear``) only; pruning covers Linear and
convolution weights. Two int8 modes:

``"int8"``
    per-output-channel symmetric int8 weights plus float scales; the graph dequantizes
    them, and the interpreter folds that into float weights once, at load. Storage is
    about 4x smaller; compute stays float (the fastest kernels on CPUs without int8 dot
    products, where torch's ``_int_mm``/``_weight_int8pack_mm`` lag far behind float).
``"int8-dynamic"``
    dynamic quantization: each request's activations are quantized per row at run time
    and multiplied with the int8 weights by ``aten._int_mm`` (int32 accumulation), then
    rescaled. Linear inputs must be 2-D (flatten first).

>>> import torch
>>> w = {"fc.weight": torch.tensor([[0.1, -2.0], [0.3, 0.0]])}
>>> pruned, sparsity = prune(w, ["fc.weight"], 0.5)
>>> pruned["fc.weight"].tolist(), sparsity["fc.weight"]
([[0.0, -2.0], [0.30000001192092896, 0.0]], 0.5)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

LINEAR = "aten.linear.default"
CONVS = frozenset(
    {
        "aten.conv1d.default",
        "aten.conv2d.default",
        "aten.conv3d.default",
        "aten.convolution.default",
        "aten.conv_transpose1d.default",
        "aten.conv_transpose2d.input",
        "aten.conv_transpose3d.input",
    }
)
QUANT_MODES = ("int8", "int8-dynamic")
PRUNE_SCOPES = ("layer", "global")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": name}


def weight_nodes(spec: dict[str, Any], ops: Iterable[str]) -> dict[str, str]:
    """Stored tensors used as the weight (second argument) of ``ops``: node name -> key.

    >>> spec = {"inputs": [{"node": "w", "kind": "tensor", "key": "fc.weight"}],
    ...         "nodes": [{"op": LINEAR, "args": [{"$ref": "x"}, {"$ref": "w"}]}]}
    >>> weight_nodes(spec, [LINEAR])
    {'w': 'fc.weight'}
    """
    ops = set(ops)
    stored = {i["node"]: i["key"] for i in spec["inputs"] if i["kind"] == "tensor"}
    found: dict[str, str] = {}
    for node in spec["nodes"]:
        if node["op"] in ops and len(node["args"]) > 1:
            w = node["args"][1]
            if isinstance(w, dict) and w.get("$ref") in stored:
                found[w["$ref"]] = stored[w["$ref"]]
    return found


def prune(
    tensors: dict[str, torch.Tensor], keys: list[str], amount: float, scope: str = "layer"
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Zero the ``amount`` fraction of smallest-magnitude entries of the tensors ``keys``.

    ``scope="layer"`` prunes each tensor to ``amount``; ``"global"`` ranks all of them
    together (layers with small weights lose more). Returns the new tensors (zeros stored
    densely) and each pruned tensor's real sparsity.
    """
    import torch

    out = dict(tensors)
    groups = [[k] for k in keys] if scope == "layer" else [list(keys)]
    for group in groups:
        flat = torch.cat([tensors[k].detach().abs().flatten().float() for k in group])
        n = round(amount * flat.numel())
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        # argsort, not a threshold: ties at the threshold would overshoot the target.
        keep[torch.argsort(flat, stable=True)[:n]] = False
        start = 0
        for k in group:
            size = tensors[k].numel()
            mask = keep[start : start + size].reshape(tensors[k].shape)
            out[k] = torch.where(mask, tensors[k], torch.zeros((), dtype=tensors[k].dtype))
            start += size
    return out, {k: float((out[k] == 0).sum()) / max(out[k].numel(), 1) for k in keys}


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8: ``(q, scale)`` with ``w ≈ q * scale[:, None]``.

    >>> import torch
    >>> q, s = quantize_rows(torch.tensor([[1.0, -0.5], [0.0, 0.0]]))
    >>> q.tolist(), s.tolist()
    ([[127, -64], [0, 0]], [0.007874015718698502, 1.0])
    """
    import torch

    amax = w.detach().float().abs().amax(dim=1)
    # An all-zero row (fully pruned) keeps scale 1: no division by zero, stays zero.
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def quantize(
    spec: dict[str, Any], tensors: dict[str, torch.Tensor], mode: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[str], list[str]]:
    """Rewrite Linear layers to int8; return ``(spec, tensors, quantized, skipped)`` keys.

    A weight that is also used outside a Linear layer (tied to an embedding, say) is
    skipped and named in ``skipped``.
    """
    spec = copy.deepcopy(spec)
    tensors = dict(tensors)
    candidates = weight_nodes(spec, [LINEAR])
    uses: dict[str, int] = {}
    for node in spec["nodes"]:
        for name in _names(node["args"]) + _names(list(node["kwargs"].values())):
            uses[name] = uses.get(name, 0) + 1
    linear_uses = {
        n: sum(
            1 for node in spec["nodes"] if node["op"] == LINEAR and _names(node["args"][1:2]) == [n]
        )
        for n in candidates
    }
    skipped = [
        candidates[n]
        for n in candidates
        if uses.get(n) != linear_uses[n]
        or tensors[candidates[n]].dim() != 2
        or not tensors[candidates[n]].is_floating_point()
    ]
    chosen = {n: k for n, k in candidates.items() if k not in skipped}
    taken = {i["node"] for i in spec["inputs"]} | {n["name"] for n in spec["nodes"]}
    prologue: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    info = {i["node"]: i for i in spec["inputs"]}
    for name, key in chosen.items():
        w = tensors[key]
        q, scale = quantize_rows(w)
        scale_name = _fresh(f"{name}_scale", taken)
        if mode == "int8":
            tensors[key], tensors[f"{key}_scale"] = q, scale[:, None].to(w.dtype).contiguous()
            f32, dq = _fresh(f"{name}_float", taken), _fresh(f"{name}_dq", taken)
            dtype = {"$dtype": str(w.dtype).removeprefix("torch.")}
            prologue += [
                _node(f32, "aten._to_copy.default", [_ref(name)], dtype=dtype),
                _node(dq, "aten.mul.Tensor", [_ref(f32), _ref(scale_name)]),
            ]
            info[name]["_new"] = dq
        else:
            tensors[key], tensors[f"{key}_scale"] = q.t().contiguous(), scale
        info[name].update(shape=list(tensors[key].shape), dtype="int8")
        spec["inputs"].append(
            {
                "node": scale_name,
                "kind": "tensor",
                "key": f"{key}_scale",
                "shape": list(tensors[f"{key}_scale"].shape),
                "dtype": str(tensors[f"{key}_scale"].dtype).removeprefix("torch."),
            }
        )
        info[name]["_scale"] = scale_name
    for node in spec["nodes"]:
        used = _names(node["args"][1:2]) if node["op"] == LINEAR else []
        if not used or used[0] not in chosen:
            nodes.append(node)
        elif mode == "int8":
            node["args"][1] = _ref(info[used[0]]["_new"])
            nodes.append(node)
        else:
            nodes += _dynamic_linear(node, info[used[0]]["_scale"], taken)
    for item in spec["inputs"]:
        item.pop("_new", None)
        item.pop("_scale", None)
    spec["nodes"] = prologue + nodes
    return spec, tensors, list(chosen.values()), skipped


def _dynamic_linear(node: dict[str, Any], scale: str, taken: set[str]) -> list[dict[str, Any]]:
    """``linear(x, w, b)`` as per-row int8 activations times int8 weights (``_int_mm``)."""
    x, w = node["args"][0], node["args"][1]
    bias = node["args"][2] if len(node["args"]) > 2 else node["kwargs"].get("bias")
    n = {
        s: _fresh(f"{node['name']}_{s}", taken)
        for s in ("abs", "amax", "clamp", "xs", "div", "round", "xq", "mm", "float", "rows")
    }
    int8, f32 = {"$dtype": "int8"}, {"$dtype": "float32"}
    out = [
        _node(n["abs"], "aten.abs.default", [x]),
        _node(n["amax"], "aten.amax.default", [_ref(n["abs"]), [-1], True]),
        # The tiny floor keeps an all-zero row at scale > 0 (its products stay 0).
        _node(n["clamp"], "aten.clamp_min.default", [_ref(n["amax"]), 1e-12]),
        _node(n["xs"], "aten.div.Scalar", [_ref(n["clamp"]), 127.0]),
        _node(n["div"], "aten.div.Tensor", [x, _ref(n["xs"])]),
        _node(n["round"], "aten.round.default", [_ref(n["div"])]),
        _node(n["xq"], "aten._to_copy.default", [_ref(n["round"])], dtype=int8),
        _node(n["mm"], "aten._int_mm.default", [_ref(n["xq"]), w]),
        _node(n["float"], "aten._to_copy.default", [_ref(n["mm"])], dtype=f32),
        _node(n["rows"], "aten.mul.Tensor", [_ref(n["float"]), _ref(n["xs"])]),
    ]
    last = node["name"] if bias is None else _fresh(f"{node['name']}_nobias", taken)
    out.append(_node(last, "aten.mul.Tensor", [_ref(n["rows"]), _ref(scale)]))
    if bias is not None:
        out.append(_node(node["name"], "aten.add.Tensor", [_ref(last), bias]))
    return out


def _node(name: str, op: str, args: list[Any], **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "op": op, "args": args, "kwargs": kwargs}


def _fresh(name: str, taken: set[str]) -> str:
    base, i = name, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _names(value: Any) -> list[str]:
    if isinstance(value, dict) and "$ref" in value:
        return [value["$ref"]]
    if isinstance(value, list):
        return [n for v in value for n in _names(v)]
    return []
