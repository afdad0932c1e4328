"""A safe, JSON form of a ``torch.export`` graph, and the interpreter that runs it.

Why not ``torch.export.load``? Loading a ``.pt2`` archive is not safe on bytes you did not
write yourself: the archive says per tensor whether it is pickled, and the loader then
calls ``torch.load(..., weights_only=False)`` or ``pickle.loads``; its sample inputs fall
back to ``weights_only=False`` on error; and the exported program's JSON feeds symbolic
shape expressions to ``sympy.sympify``, which evaluates Python. The PyTorch docs say so
too ("never load data from an untrusted source").

So a bundle also keeps the exported graph in this form: a list of ATen operator calls,
named by their registered name (``"aten.linear.default"``), whose arguments are plain
JSON values, references to earlier nodes, or a few tagged enums (``{"$dtype":
"float32"}``). Loading resolves each name in ``torch.ops.aten`` (nothing is imported or
evaluated), refuses mutating operators, and runs the nodes in order. Tensors come from
safetensors. The ``.pt2`` file stays in the bundle for tools that want the real
``ExportedProgram`` (AOTInductor, ExecuTorch) and trust its origin.

>>> import torch
>>> model = torch.nn.Linear(3, 2)
>>> ep = torch.export.export(model, (torch.zeros(2, 3),))
>>> spec, tensors = graph_to_spec(ep)
>>> run = SafeGraph(spec, tensors)
>>> tuple(run(torch.zeros(5, 3)).shape)
(5, 2)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import torch

FORMAT = "hybridnb-graph/1"

#: Python functions that export leaves in graphs (symbolic-size arithmetic, tuple access).
_PY_OPS: dict[str, Callable[..., Any]] = {
    "operator.getitem": operator.getitem,
    "operator.add": operator.add,
    "operator.sub": operator.sub,
    "operator.mul": operator.mul,
    "operator.floordiv": operator.floordiv,
    "operator.truediv": operator.truediv,
    "operator.mod": operator.mod,
    "operator.neg": operator.neg,
}
_PY_NAMES = {fn: name for name, fn in _PY_OPS.items()}
#: Operator namespaces a graph may call: the core ATen library and its primitives.
_NAMESPACES = ("aten", "prims")


class GraphError(UsageError):
    """A model graph cannot be stored or loaded safely."""


# -- encoding -------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    import torch
    import torch.fx

    if isinstance(value, torch.fx.Node):
        return {"$ref": value.name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, torch.dtype):
        return {"$dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"$device": str(value)}
    if isinstance(value, torch.layout):
        return {"$layout": str(value).removeprefix("torch.")}
    if isinstance(value, torch.memory_format):
        return {"$memory_format": str(value).removeprefix("torch.")}
    raise GraphError(f"cannot store an operator argument of type {type(value).__name__}: "
                     f"{value!r}")


def _target_name(target: Any) -> str:
    import torch

    if isinstance(target, torch._ops.OpOverload):
        ns = target.namespace
        if ns not in _NAMESPACES:
            raise GraphError(f"operator {target} is outside {'/'.join(_NAMESPACES)}; "
                             "custom operators cannot be served from a bundle")
        return f"{ns}.{target._schema.name.split('::', 1)[1]}.{target._overloadname}"
    if target in _PY_NAMES:
        return _PY_NAMES[target]
    raise GraphError(f"cannot store a call to {target!r} (not an ATen operator)")


def graph_to_spec(ep: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Turn an ``ExportedProgram`` into ``(spec, tensors)``: a JSON-able dict and its weights.

    Parameters, buffers and lifted constants become ``tensors``, keyed by their
    fully-qualified names; the one user input is a placeholder named ``"$input"``.
    """
    from torch.export.graph_signature import InputKind, OutputKind

    sig = ep.graph_signature
    inputs: list[dict[str, Any]] = []
    tensors: dict[str, Any] = {}
    users = 0
    for spec in sig.input_specs:
        name = spec.arg.name
        if spec.kind is InputKind.USER_INPUT:
            users += 1
            inputs.append({"node": name, "kind": "input"})
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            value = ep.state_dict.get(spec.target, ep.constants.get(spec.target))
            if value is None:
                raise GraphError(f"no value for {spec.target!r} in the exported program")
            tensors[spec.target] = value.detach()
            inputs.append({"node": name, "kind": "tensor", "key": spec.target,
                           "shape": list(value.shape), "dtype": str(value.dtype)[6:]})
        else:
            raise GraphError(f"graph input {name!r} is a {spec.kind.name}; only tensors "
                             "can be served")
    if users != 1:
        raise GraphError(f"the model takes {users} inputs; a bundle serves exactly one")
    for out in sig.output_specs:
        if out.kind is not OutputKind.USER_OUTPUT:
            raise GraphError(f"the graph output {out.arg.name!r} is a {out.kind.name} "
                             "(does the model mutate a buffer? call model.eval())")
    nodes, outputs = [], []
    for node in ep.graph.nodes:
        if node.op == "call_function":
            nodes.append({"name": node.name, "op": _target_name(node.target),
                          "args": _encode(list(node.args)),
                          "kwargs": {k: _encode(v) for k, v in node.kwargs.items()}})
        elif node.op == "output":
            outputs = _encode(list(node.args[0]))
        elif node.op != "placeholder":
            raise GraphError(f"graph node {node.name!r} is a {node.op}; only operator "
                             "calls can be served")
    if len(outputs) != 1:
        raise GraphError(f"the model returns {len(outputs)} tensors; a bundle serves one")
    return {"format": FORMAT, "inputs": inputs, "nodes": nodes, "outputs": outputs}, tensors


# -- decoding -------------------------------------------------------------------------------


def _resolve(name: Any) -> Callable[..., Any]:
    import torch

    if not isinstance(name, str):
        raise GraphError(f"operator name {name!r} is not a string")
    if name in _PY_OPS:
        return _PY_OPS[name]
    parts = name.split(".")
    if len(parts) != 3 or parts[0] not in _NAMESPACES or not all(
            p.isidentifier() and not p.startswith("__") for p in parts):
        raise GraphError(f"operator {name!r} is not an {'/'.join(_NAMESPACES)} operator")
    try:
        op = getattr(getattr(getattr(torch.ops, parts[0]), parts[1]), parts[2])
    except (AttributeError, RuntimeError):
        raise GraphError(f"unknown operator {name!r} (made by a newer PyTorch?)") from None
    if not isinstance(op, torch._ops.OpOverload):
        raise GraphError(f"{name!r} is not an operator overload")
    if op._schema.is_mutable:
        raise GraphError(f"operator {name!r} mutates its inputs; refusing to run it")
    return op




def _decode(value: Any, index: dict[str, int]) -> Any:
    """Decode an argument; node references become ``_Ref`` placeholders."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, index) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, arg), = value.items()
        if tag == "$ref":
            if arg not in index:
                raise GraphError(f"reference to {arg!r} before it is defined")
            return _Ref(index[arg])
        if tag == "$float" and arg in ("inf", "-inf", "nan"):
            return float(arg)
        enum_type = {"$dtype": torch.dtype, "$layout": torch.layout,
                     "$memory_format": torch.memory_format}.get(tag)
        if enum_type is not None and isinstance(arg, str) and arg.isidentifier():
            found = getattr(torch, arg, None)
            if isinstance(found, enum_type):
                return found
        if tag == "$device" and isinstance(arg, str):
            return torch.device(arg)
    raise GraphError(f"cannot decode the argument {value!r}")


class _Ref:
    __slots__ = ("i",)

    def __init__(self, i: int):
        self.i = i


def _bind(value: Any, env: list[Any]) -> Any:
    if isinstance(value, _Ref):
        return env[value.i]
    if isinstance(value, list):
        return [_bind(v, env) for v in value]
    return value


def _refs(value: Any) -> list[int]:
    if isinstance(value, _Ref):
        return [value.i]
    if isinstance(value, list):
        return [i for v in value for i in _refs(v)]
    return []


def _has_ref(value: Any) -> bool:
    return isinstance(value, _Ref) or (isinstance(value, list) and any(map(_has_ref, value)))


class SafeGraph:
    """A runnable graph decoded from a spec made by :func:`graph_to_spec`.

    Parameters
    ----------
    spec:
        The JSON graph.
    tensors:
        Named tensors (from safetensors); each must match the shape and dtype the graph
        declares for it.
    """

    def __init__(self, spec: dict[str, Any], tensors: dict[str, torch.Tensor]):
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise GraphError(f"not a {FORMAT} graph")
        index: dict[str, int] = {}
        env: list[Any] = []
        self._input = -1
        try:
            for item in spec["inputs"]:
                index[item["node"]] = len(env)
                if item["kind"] == "input":
                    self._input = len(env)
                    env.append(None)
                    continue
                tensor = tensors.get(item["key"])
                if tensor is None:
                    raise GraphError(f"tensor {item['key']!r} is missing from the weights")
                if list(tensor.shape) != item["shape"] or str(tensor.dtype)[6:] != item["dtype"]:
                    raise GraphError(
                        f"tensor {item['key']!r} is {str(tensor.dtype)[6:]}"
                        f"{list(tensor.shape)}, the graph expects {item['dtype']}{item['shape']}")
                env.append(tensor)
            steps = []
            for node in spec["nodes"]:
                fn = _resolve(node["op"])
                args = _decode(node["args"], index)
                kwargs = {str(k): _decode(v, index) for k, v in node["kwargs"].items()}
                steps.append((fn, args, kwargs, _has_ref(args) or _has_ref(list(kwargs.values()))))
                index[node["name"]] = len(env)
                env.append(None)
            self._outputs = [_decode(o, index) for o in spec["outputs"]]
        except (KeyError, TypeError, AttributeError) as exc:
            raise GraphError(f"malformed graph: {exc!r}") from None
        if self._input < 0:
            raise GraphError("the graph has no input")
        first = len(env) - len(steps)
        self._steps = self._fold(steps, env, first)
        self._env = env

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on one input batch."""
        env = list(self._env)
        env[self._input] = x
        for i, fn, args, kwargs, refs in self._steps:
            if refs:
                env[i] = fn(*_bind(args, env), **{k: _bind(v, env) for k, v in kwargs.items()})
            else:
                env[i] = fn(*args, **kwargs)
        out: torch.Tensor = _bind(self._outputs[0], env)
        return out

    def _fold(self, steps: list[Any], env: list[Any], first: int) -> list[Any]:
        """Run once, now, every step that depends only on stored tensors; return the rest.

        Compressed bundles store int8 weights and dequantize them in the graph
        (:mod:`hybridnb.serve.compression`): folding does that once at load instead of on
        every request. Seeded random operators are never folded (each call must draw).
        """
        import torch

        const = [i != self._input for i in range(first)]
        live = []
        for i, (fn, args, kwargs, refs) in enumerate(steps, start=first):
            deps = _refs(args) + _refs(list(kwargs.values()))
            seeded = torch.Tag.nondeterministic_seeded in getattr(fn, "tags", ())
            if not seeded and all(const[d] for d in deps):
                try:
                    env[i] = fn(*_bind(args, env), **{k: _bind(v, env) for k, v in kwargs.items()})
                except Exception as exc:
                    raise GraphError(f"operator {fn} fails on the stored tensors: {exc}") from None
                const.append(True)
            else:
                const.append(False)
                live.append((i, fn, args, kwargs, refs))
        # Drop stored tensors only folded steps needed (e.g. int8 weights once dequantized).
        used = {d for _, _, args, kwargs, _ in live
                for d in _refs(args) + _refs(list(kwargs.values()))}
        used |= set(_refs(self._outputs))
        for i in range(len(env)):
            if const[i] and i not in used:
                env[i] = None
        return live

    def __repr__(self) -> str:
        return f"SafeGraph({len(self._steps)} operator calls)"
