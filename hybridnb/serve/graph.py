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
  the enum values, devices only ``cpu``, no generators, no training-mode flags;
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
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .graph_policy import (
    ARG_VALUES,
    DEVICES,
    DTYPES,
    LAYOUTS,
    MEMORY_FORMATS,
    PY_OPS,
    STRING_ENUMS,
    GraphLimits,
    refusal,
)

if TYPE_CHECKING:
    import torch

FORMAT = "hybridnb-graph/1"

#: The Python functions behind :data:`~hybridnb.serve.graph_policy.PY_OPS`.
_PY_FUNCS: dict[str, Callable[..., Any]] = {
    name: getattr(operator, name.split(".", 1)[1]) for name in PY_OPS}
_PY_NAMES = {fn: name for name, fn in _PY_FUNCS.items()}
_NAMESPACES = ("aten",)
_FIX = ("a bundle may call only the operators and arguments hybridnb.serve.graph_policy "
        "allows: re-export the model with hybridnb.serve.bundle(), or do not load a "
        "bundle from this source")


class GraphError(UsageError):
    """A model graph cannot be stored or loaded safely; the message names the node."""


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


# -- decoding and checking ------------------------------------------------------------------


class _Ref:
    """A decoded ``{"$ref": name}``: the environment slot of an earlier value."""

    __slots__ = ("i", "name")

    def __init__(self, i: int, name: str):
        self.i, self.name = i, name

    def __repr__(self) -> str:
        return f"{{'$ref': {self.name!r}}}"


@dataclass
class _Input:
    node: str
    key: str | None  # None: the request
    shape: list[int]
    dtype: str


@dataclass
class _Step:
    """One operator call: ``slot`` is where its value goes in the environment."""

    slot: int
    where: str
    fn: Callable[..., Any]
    args: list[Any]
    kwargs: dict[str, Any]
    refs: list[int]
    python: bool
    params: list[str]  # names of the positional arguments


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _resolve(name: Any, where: str) -> Callable[..., Any]:
    import torch

    if not isinstance(name, str):
        raise GraphError(f"{where}: the operator name {_short(name)} is not a string")
    why = refusal(name)
    if why is not None:
        # Only names on the allow-list are ever looked up: nothing else is touched.
        raise GraphError(f"{where}: operator {_short(name)} is refused: {why}; {_FIX}")
    if name in _PY_FUNCS:
        return _PY_FUNCS[name]
    _, packet, overload = name.split(".")
    try:
        op = getattr(getattr(torch.ops.aten, packet), overload)
    except (AttributeError, RuntimeError):
        raise GraphError(f"{where}: unknown operator {name!r} (made by another "
                         "PyTorch?)") from None
    if not isinstance(op, torch._ops.OpOverload) or op._schema.is_mutable:
        raise GraphError(f"{where}: operator {name!r} mutates its inputs; refusing to run it")
    return op


def _decode(value: Any, index: Mapping[str, int], where: str, limits: GraphLimits,
            depth: int = 0) -> Any:
    """Decode one JSON argument; node references become :class:`_Ref`."""
    import torch

    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        if abs(value) > limits.max_int:
            raise GraphError(f"{where}: an integer of {value.bit_length()} bits is out of "
                             f"range (at most {limits.max_int.bit_length() - 1} bits)")
        return value
    if isinstance(value, list):
        if depth >= limits.max_depth:
            raise GraphError(f"{where}: lists nested deeper than {limits.max_depth} "
                             "levels; an operator argument is a value or a list of values")
        if len(value) > limits.max_list:
            raise GraphError(f"{where}: a list of {len(value)} items (at most "
                             f"{limits.max_list})")
        return [_decode(v, index, where, limits, depth + 1) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, arg), = value.items()
        if tag == "$ref":
            if not isinstance(arg, str) or arg not in index:
                raise GraphError(f"{where}: refers to {_short(arg)}, which is not defined "
                                 "before this node")
            return _Ref(index[arg], arg)
        if tag == "$float" and arg in ("inf", "-inf", "nan"):
            return float(arg)
        enums = {"$dtype": DTYPES, "$layout": LAYOUTS, "$memory_format": MEMORY_FORMATS,
                 "$device": DEVICES}
        if tag in enums:
            if arg not in enums[tag]:
                raise GraphError(f"{where}: cannot decode the argument {_short(value)}: "
                                 f"{tag[1:]} must be one of {', '.join(enums[tag])}")
            return torch.device(arg) if tag == "$device" else getattr(torch, arg)
    raise GraphError(f"{where}: cannot decode the argument {_short(value)}")


def _walk(value: Any) -> Any:
    if isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def _check_arg(where: str, op: str, param: Any, value: Any) -> None:
    """Schema-level rules the policy adds to what the operator itself checks."""
    import torch

    kind = str(param.real_type)
    if "str" in kind:
        allowed = STRING_ENUMS.get((op, param.name), ())
        if not (value is None and kind.startswith("Optional")) and value not in allowed:
            choices = f"one of {', '.join(map(repr, allowed))}" if allowed else "none"
            raise GraphError(f"{where}: {_short(value)} is not an allowed value ({choices}); "
                             "string arguments may only be known enums")
        return
    if any(isinstance(v, str) for v in _walk(value)):
        raise GraphError(f"{where}: a string where the operator expects {kind}; graphs "
                         "hold strings only for known enums")
    if "Generator" in kind and value is not None:
        raise GraphError(f"{where}: a random generator is not allowed")
    if "Device" in kind and value is not None and value != torch.device("cpu"):
        raise GraphError(f"{where}: device {_short(value)}; graphs run on the cpu only")
    if param.name == "pin_memory" and value not in (None, False):
        raise GraphError(f"{where}: pin_memory must be false (pinned memory needs an "
                         "accelerator runtime)")
    fixed = ARG_VALUES.get((op, param.name))
    if fixed is not None and not any(value is v for v in fixed):
        raise GraphError(f"{where}: must be {' or '.join(map(repr, fixed))}, got "
                         f"{_short(value)} (a served graph runs in inference mode)")


def _bind(where: str, op: str, fn: Any, args: list[Any], kwargs: dict[str, Any],
          index: Mapping[str, int], limits: GraphLimits
          ) -> tuple[list[Any], dict[str, Any], list[str]]:
    """Decode ``args``/``kwargs`` against the schema of ``fn``; check each argument."""
    if op in _PY_FUNCS:
        want = 1 if op == "operator.neg" else 2
        if len(args) != want or kwargs:
            raise GraphError(f"{where}: takes {want} positional arguments, got {len(args)}"
                             f"{' and keywords' if kwargs else ''}")
        out = []
        for j, a in enumerate(args):
            value = _decode(a, index, f"{where}, argument {j}", limits)
            if not isinstance(value, (_Ref, int, float)):  # bool is an int
                raise GraphError(f"{where}, argument {j}: {_short(value)}; Python "
                                 "operators in a graph work on numbers only")
            out.append(value)
        if op == "operator.getitem" and (type(out[1]) is not int or not isinstance(out[0], _Ref)):
            raise GraphError(f"{where}: indexes the result of an earlier node with an "
                             "integer literal only")
        return out, {}, [str(j) for j in range(len(out))]
    params = list(fn._schema.arguments)
    positional = [p for p in params if not p.kwarg_only]
    if len(args) > len(positional):
        raise GraphError(f"{where}: {len(args)} positional arguments; the operator takes "
                         f"at most {len(positional)}")
    bound = dict(zip([p.name for p in positional], args, strict=False))
    by_name = {p.name: p for p in params}
    for key in kwargs:
        if key not in by_name:
            raise GraphError(f"{where}: no argument {_short(key)}; the operator takes "
                             f"{', '.join(by_name)}")
        if key in bound:
            raise GraphError(f"{where}: argument {key!r} given twice")
    bound.update(kwargs)
    decoded: dict[str, Any] = {}
    for p in params:
        if p.name not in bound:
            if not p.has_default_value():
                raise GraphError(f"{where}: missing argument {p.name!r}")
            continue
        at = f"{where}, argument {p.name!r}"
        decoded[p.name] = _decode(bound[p.name], index, at, limits)
        _check_arg(at, op, p, decoded[p.name])
    names = [p.name for p in positional[:len(args)]]
    return ([decoded[n] for n in names],
            {k: v for k, v in decoded.items() if k not in names}, names)


def _refs(value: Any) -> list[int]:
    if isinstance(value, _Ref):
        return [value.i]
    if isinstance(value, list):
        return [i for v in value for i in _refs(v)]
    return []


def _parse_inputs(spec: Any, limits: GraphLimits) -> list[_Input]:
    import torch

    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise GraphError(f"not a {FORMAT} graph")
    items = spec.get("inputs")
    if not isinstance(items, list) or len(items) > limits.max_nodes:
        raise GraphError("'inputs' must be a list of at most "
                         f"{limits.max_nodes} placeholders")
    out, names, total = [], set(), 0
    for j, item in enumerate(items):
        where = f"input {j}"
        if not isinstance(item, dict) or not isinstance(item.get("node"), str) \
                or item.get("kind") not in ("input", "tensor"):
            raise GraphError(f"{where}: expected {{'node': NAME, 'kind': 'input' or "
                             f"'tensor', ...}}, got {_short(item)}")
        if item["node"] in names:
            raise GraphError(f"{where}: the name {item['node']!r} is defined twice")
        names.add(item["node"])
        if item["kind"] == "input":
            out.append(_Input(item["node"], None, [], ""))
            continue
        key, shape, dtype = item.get("key"), item.get("shape"), item.get("dtype")
        if not isinstance(key, str) or dtype not in DTYPES or not isinstance(shape, list) \
                or len(shape) > 16 or any(type(d) is not int or not 0 <= d <= limits.max_int
                                          for d in shape):
            raise GraphError(f"{where} ({item['node']!r}): expected a tensor key, a dtype "
                             f"({', '.join(DTYPES)}) and a shape of at most 16 sizes")
        size = math.prod(shape) * getattr(torch, dtype).itemsize
        total += size
        if size > limits.max_tensor_bytes or total > limits.max_constant_bytes:
            raise GraphError(f"{where} ({key!r}): stored tensors of {total} bytes exceed "
                             f"the limit ({limits.max_tensor_bytes} a tensor, "
                             f"{limits.max_constant_bytes} in all)")
        out.append(_Input(item["node"], key, shape, dtype))
    if sum(i.key is None for i in out) != 1:
        raise GraphError(f"the graph has {sum(i.key is None for i in out)} request inputs; "
                         "it must have exactly one")
    return out


def expected_tensors(spec: Any, limits: GraphLimits | None = None
                     ) -> dict[str, tuple[str, list[int]]]:
    """The stored tensors a graph spec declares: ``{key: (dtype, shape)}``.

    ``load_bundle`` compares them with the safetensors header before reading any data.
    The spec's operators and arguments are checked too (sizes are not: they need the
    input's shape).

    >>> spec = {"format": FORMAT, "inputs": [{"node": "x", "kind": "input"}, {"node": "w",
    ...         "kind": "tensor", "key": "fc.weight", "shape": [2, 3], "dtype": "float32"}],
    ...         "nodes": [], "outputs": [{"$ref": "x"}]}
    >>> expected_tensors(spec)
    {'fc.weight': ('float32', [2, 3])}
    """
    found: dict[str, tuple[str, list[int]]] = {}
    inputs, _, _ = _parse(spec, limits or GraphLimits())  # every static check, no sizes
    for item in inputs:
        if item.key is None:
            continue
        if found.setdefault(item.key, (item.dtype, item.shape)) != (item.dtype, item.shape):
            raise GraphError(f"tensor {item.key!r} is declared twice with different "
                             "shapes or dtypes")
    return found


def _parse(spec: Any, limits: GraphLimits) -> tuple[list[_Input], list[_Step], _Ref]:
    inputs = _parse_inputs(spec, limits)
    index = {item.node: i for i, item in enumerate(inputs)}
    nodes = spec.get("nodes")
    if not isinstance(nodes, list):
        raise GraphError("'nodes' must be a list of operator calls")
    if len(nodes) > limits.max_nodes:
        raise GraphError(f"the graph has {len(nodes)} nodes; at most {limits.max_nodes} "
                         "are allowed")
    steps = []
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise GraphError(f"node {i}: expected an object, got {_short(node)}")
        name, op = node.get("name"), node.get("op")
        args, kwargs = node.get("args", []), node.get("kwargs", {})
        where = f"node {i} ({_short(name, 40)}, {_short(op, 60)})"
        if not isinstance(name, str) or not isinstance(args, list) \
                or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise GraphError(f"{where}: expected a string 'name', a list 'args' and an "
                             "object 'kwargs'")
        if name in index:
            raise GraphError(f"{where}: the name {name!r} is defined twice")
        if isinstance(op, str) and op.isprintable() and len(op) <= 60:
            where = f"node {i} ({name!r}, {op})"
        fn = _resolve(op, where)
        op = str(op)  # _resolve took only a name on the allow-list
        dargs, dkwargs, names = _bind(where, op, fn, args, kwargs, index, limits)
        refs = _refs(dargs) + _refs(list(dkwargs.values()))
        index[name] = len(inputs) + i
        steps.append(_Step(index[name], where, fn, dargs, dkwargs, refs, op in _PY_FUNCS,
                           names))
    outputs = spec.get("outputs")
    if not isinstance(outputs, list) or len(outputs) != 1:
        raise GraphError("'outputs' must list exactly one value")
    out = _decode(outputs[0], index, "the output", limits)
    if not isinstance(out, _Ref):
        raise GraphError("the output must refer to a node")
    return inputs, steps, out


def _bind_env(value: Any, env: list[Any]) -> Any:
    if isinstance(value, _Ref):
        return env[value.i]
    if isinstance(value, list):
        return [_bind_env(v, env) for v in value]
    return value


def _row_shape(input_shape: Sequence[int], limits: GraphLimits) -> tuple[int, ...]:
    shape = list(input_shape)
    if not shape or shape[0] != -1 or len(shape) > 16 or any(
            type(d) is not int or not 0 < d <= limits.max_int for d in shape[1:]):
        raise GraphError(f"input shape {_short(shape)}: expected -1 (the batch) followed "
                         "by positive sizes")
    return tuple(shape[1:])


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
        self._row = _row_shape(input_shape, limits)
        self._dtype = getattr(torch, input_dtype)
        self._max_batch = limits.max_batch
        inputs, steps, out = _parse(spec, limits)
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
                env[step.slot] = step.fn(*_bind_env(step.args, env),
                                         **{k: _bind_env(v, env) for k, v in step.kwargs.items()})
            else:
                env[step.slot] = step.fn(*step.args, **step.kwargs)
        out: torch.Tensor = env[self._output]
        return out

    def run_with(self, tensors: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Run every step (none folded) on ``tensors`` in place of the loaded ones.

        For tracing the checked graph into a new program with ``torch.export``
        (:mod:`hybridnb.serve.compression` passes its module's buffers, so they stay
        buffers); serving calls the graph itself. ``x`` is not checked here: the tracer
        checks shapes itself.
        """
        env: list[Any] = [None] * len(self._env)
        for slot, key in self._keys.items():
            env[slot] = tensors[key]
        env[self._input] = x
        for step in self._all_steps:
            env[step.slot] = step.fn(*_bind_env(step.args, env),
                                     **{k: _bind_env(v, env) for k, v in step.kwargs.items()})
        out: torch.Tensor = env[self._output]
        return out

    def _fold(self, steps: list[_Step], env: list[Any], constant: list[bool]) -> list[_Step]:
        """Run once, now, every step that depends only on stored tensors; return the rest.

        Compressed bundles store int8 weights and dequantize them in the graph
        (:mod:`hybridnb.serve.compression`): folding does that once at load instead of on
        every request. The sizes were checked before (no allowed operator draws random
        numbers, so a folded step gives what it would give on every call).
        """
        live = []
        for step in steps:
            if not constant[step.slot]:
                live.append(step)
                continue
            try:
                env[step.slot] = step.fn(*_bind_env(step.args, env),
                                         **{k: _bind_env(v, env) for k, v in step.kwargs.items()})
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
