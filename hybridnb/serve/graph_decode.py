"""Decoding a graph spec into checked operator calls: the static half of the safety rules.

Each node's operator must be on the allow-list of :mod:`hybridnb.serve.graph_policy`
(only such names are ever looked up in ``torch.ops``); its arguments are bound to the
operator's schema and checked against the policy (strings only as known enums, devices
``cpu`` only, no generators, no training-mode flags); counts, nesting and integers stay
within :class:`~hybridnb.serve.graph_policy.GraphLimits`. Sizes are the dynamic half
(:mod:`hybridnb.serve.graph_shapes`). Errors name the node, operator and argument.

>>> from hybridnb.serve.graph_policy import GraphLimits
>>> spec = {"format": FORMAT, "inputs": [{"node": "x", "kind": "input"}],
...         "nodes": [{"name": "y", "op": "aten.from_file.default", "args": ["/etc/shadow"],
...                    "kwargs": {}}], "outputs": [{"$ref": "y"}]}
>>> try:
...     parse(spec, GraphLimits())
... except GraphError as exc:
...     print(str(exc)[:76])
node 0 ('y', aten.from_file.default): operator 'aten.from_file.default' is r
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def _walk(value: Any) -> Iterator[Any]:
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
    inputs, _, _ = parse(spec, limits or GraphLimits())  # every static check, no sizes
    for item in inputs:
        if item.key is None:
            continue
        if found.setdefault(item.key, (item.dtype, item.shape)) != (item.dtype, item.shape):
            raise GraphError(f"tensor {item.key!r} is declared twice with different "
                             "shapes or dtypes")
    return found


def parse(spec: Any, limits: GraphLimits) -> tuple[list[_Input], list[_Step], _Ref]:
    """Decode and check ``spec``: its placeholders, its operator calls, its output."""
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


def bind_env(value: Any, env: list[Any]) -> Any:
    if isinstance(value, _Ref):
        return env[value.i]
    if isinstance(value, list):
        return [bind_env(v, env) for v in value]
    return value


def row_shape(input_shape: Sequence[int], limits: GraphLimits) -> tuple[int, ...]:
    shape = list(input_shape)
    if not shape or shape[0] != -1 or len(shape) > 16 or any(
            type(d) is not int or not 0 < d <= limits.max_int for d in shape[1:]):
        raise GraphError(f"input shape {_short(shape)}: expected -1 (the batch) followed "
                         "by positive sizes")
    return tuple(shape[1:])
