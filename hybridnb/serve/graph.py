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
"float32"}``). Tensors come from safetensors. Loading a graph must be as safe as loading
safetensors, so :class:`SafeGraph` checks before anything runs:

- every operator is on the allow-list of :mod:`hybridnb.serve.graph_policy` (core ATen
  less files, storage, raw memory, random draws and training kernels), looked up by name
  (nothing is imported or evaluated);
- every argument binds to the operator's schema; strings only where the policy names
  the enum values, devices only ``cpu``, no generators, no training-mode flags
  (:mod:`hybridnb.serve.graph_decode`);
- counts, nesting, integers and tensor sizes stay within
  :class:`~hybridnb.serve.graph_policy.GraphLimits`, for every batch size
  (:mod:`hybridnb.serve.graph_shapes`);
- stored tensors have the names, dtypes and shapes the graph declares.

The ``.pt2`` file stays in the bundle for tools that want the real ``ExportedProgram``
(AOTInductor, ExecuTorch) and trust its origin.

>>> import torch
>>> model = torch.nn.Linear(3, 2)
>>> ep = torch.export.export(model, (torch.zeros(2, 3),))
>>> spec, tensors = graph_to_spec(ep)
>>> run = SafeGraph(spec, tensors, input_shape=[-1, 3], input_dtype="float32")
>>> tuple(run(torch.zeros(5, 3)).shape)
(5, 2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .graph_decode import (
    _PY_FUNCS,
    FORMAT,
    GraphError,
    _short,
    _Step,
    bind_env,
    expected_tensors,
    parse,
    row_shape,
)
from .graph_policy import DTYPES, GraphLimits, refusal

if TYPE_CHECKING:
    import torch

__all__ = ["FORMAT", "GraphError", "SafeGraph", "expected_tensors", "graph_to_spec"]

_PY_NAMES = {fn: name for name, fn in _PY_FUNCS.items()}
_NAMESPACES = ("aten",)


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
        name = f"{ns}.{target._schema.name.split('::', 1)[1]}.{target._overloadname}"
    elif target in _PY_NAMES:
        name = _PY_NAMES[target]
    else:
        raise GraphError(f"cannot store a call to {target!r} (not an ATen operator)")
    why = refusal(name)
    if why is not None:
        raise GraphError(f"the model calls {name}, which a bundle cannot serve: {why}. "
                         "Use layers built from core ATen operators (see "
                         "hybridnb/serve/graph_policy.py)")
    return name


def graph_to_spec(ep: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Turn an ``ExportedProgram`` into ``(spec, tensors)``: a JSON-able dict and its weights.

    Parameters, buffers and lifted constants become ``tensors``, keyed by their
    fully-qualified names; the one user input is a placeholder named ``"$input"``.
    A model calling an operator the policy refuses is a :class:`GraphError` here, when
    the bundle is written, rather than when it is loaded.
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


class SafeGraph:
    """A runnable graph decoded from a spec made by :func:`graph_to_spec`, checked first.

    Parameters
    ----------
    spec:
        The JSON graph.
    tensors:
        Named tensors (from safetensors): exactly the keys the graph declares, each with
        the declared shape and dtype.
    input_shape, input_dtype:
        The request tensor: ``[-1, ...]`` (``-1`` is the batch) and its dtype name, as
        ``hybridnb-model.json`` records them. Sizes are checked for these.
    limits:
        Caps on the graph (:class:`~hybridnb.serve.graph_policy.GraphLimits`).
    fold:
        Run once, at load, every step that depends only on stored tensors (int8 weights
        dequantized once). ``False`` keeps every step, for :meth:`run_with`.

    Raises :class:`GraphError` naming the node, operator and argument that is refused.
    """

    def __init__(self, spec: dict[str, Any], tensors: Mapping[str, torch.Tensor], *,
                 input_shape: Sequence[int], input_dtype: str = "float32",
                 limits: GraphLimits | None = None, fold: bool = True):
        import torch

        from .graph_shapes import check_sizes

        limits = limits or GraphLimits()
        if input_dtype not in DTYPES:
            raise GraphError(f"input dtype {input_dtype!r}: expected one of {', '.join(DTYPES)}")
        self._row = row_shape(input_shape, limits)
        self._dtype = getattr(torch, input_dtype)
        self._max_batch = limits.max_batch
        inputs, steps, out = parse(spec, limits)
        declared = {i.key for i in inputs if i.key is not None}
        extra = sorted(set(tensors) - declared)
        if extra:
            raise GraphError(f"the weights hold tensors the graph never uses: "
                             f"{_short(extra)}; remove them")
        env: list[Any] = [None] * (len(inputs) + len(steps))
        self._keys: dict[int, str] = {}
        for i, item in enumerate(inputs):
            if item.key is None:
                self._input = i
                continue
            tensor = tensors.get(item.key)
            if tensor is None:
                raise GraphError(f"tensor {item.key!r} is missing from the weights")
            got = str(tensor.dtype).removeprefix("torch.")
            if list(tensor.shape) != item.shape or got != item.dtype:
                raise GraphError(f"tensor {item.key!r} is {got}{list(tensor.shape)}, the "
                                 f"graph expects {item.dtype}{item.shape}")
            env[i], self._keys[i] = tensor, item.key
        shapes = check_sizes(inputs, steps, out.i, self._input, self._row, self._dtype, limits)
        self._out_row, self._out_dtype = shapes.output_row, shapes.output_dtype
        self._output = out.i
        self._all_steps = steps
        self._steps = self._fold(steps, env, shapes.constant) if fold else steps
        self._env = env

    @property
    def output_shape(self) -> list[int]:
        """The output's shape, ``-1`` for the batch."""
        return [-1, *self._out_row]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on one input batch (longer than ``max_batch``: in chunks)."""
        if x.dim() != len(self._row) + 1 or x.shape[1:] != self._row or x.dtype != self._dtype:
            raise GraphError(f"the input is {str(x.dtype)[6:]}{list(x.shape)}; the graph "
                             f"takes {str(self._dtype)[6:]}{[-1, *self._row]}")
        rows = x.shape[0]
        if rows == 0:
            import torch

            return torch.empty((0, *self._out_row), dtype=self._out_dtype)
        if rows > self._max_batch:
            import torch

            step = self._max_batch
            return torch.cat([self._run(x[i:i + step]) for i in range(0, rows, step)])
        return self._run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        env = list(self._env)
        env[self._input] = x
        for step in self._steps:
            if step.refs:
                env[step.slot] = step.fn(*bind_env(step.args, env),
                                         **{k: bind_env(v, env) for k, v in step.kwargs.items()})
            else:
                env[step.slot] = step.fn(*step.args, **step.kwargs)
        out: torch.Tensor = env[self._output]
        return out

    def run_with(self, tensors: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Run every step (none folded) on ``tensors`` in place of the loaded ones.

        For tracing the checked graph into a new program with ``torch.export``
        (:mod:`hybridnb.serve.compress_bundle` passes its module's buffers, so they stay
        buffers); serving calls the graph itself. ``x`` is not checked here: the tracer
        checks shapes itself.
        """
        env: list[Any] = [None] * len(self._env)
        for slot, key in self._keys.items():
            env[slot] = tensors[key]
        env[self._input] = x
        for step in self._all_steps:
            env[step.slot] = step.fn(*bind_env(step.args, env),
                                     **{k: bind_env(v, env) for k, v in step.kwargs.items()})
        out: torch.Tensor = env[self._output]
        return out

    def _fold(self, steps: list[_Step], env: list[Any], constant: list[bool]) -> list[_Step]:
        """Run once, now, every step that depends only on stored tensors; return the rest.

        Compressed bundles store int8 weights and dequantize them in the graph
        (:mod:`hybridnb.serve.compress_bundle`): folding does that once at load instead of on
        every request. The sizes were checked before (no allowed operator draws random
        numbers, so a folded step gives what it would give on every call).
        """
        live = []
        for step in steps:
            if not constant[step.slot]:
                live.append(step)
                continue
            try:
                env[step.slot] = step.fn(*bind_env(step.args, env),
                                         **{k: bind_env(v, env) for k, v in step.kwargs.items()})
            except Exception as exc:
                raise GraphError(f"{step.where}: fails on the stored tensors: "
                                 f"{_short(str(exc), 300)}") from None
        # Drop stored tensors only folded steps needed (e.g. int8 weights once dequantized).
        used = {d for step in live for d in step.refs} | {self._output}
        for i in range(len(env)):
            if constant[i] and i not in used:
                env[i] = None
        return live

    def __repr__(self) -> str:
        return f"SafeGraph({len(self._steps)} operator calls)"
