"""Load-time proof that a graph's sizes stay bounded for every batch size it can run on.

A graph's sizes are fixed by the request's batch size ``B`` alone: the other input
dimensions and every stored tensor have known shapes, no allowed operator reads a size
from tensor values (:mod:`hybridnb.serve.graph_policy` excludes them), and integers in a
graph come from literals or from sizes. So the interpreter runs the graph twice on fake
tensors, which have shapes and dtypes but no storage (nothing is allocated, nothing is
computed):

1. with ``B`` a symbol ranging over ``2..max_batch``: each value's size is an
   expression in ``B``, and torch's value-range analysis (the one ``torch.export`` uses)
   bounds ``size / B`` over the whole range;
2. with ``B = 1``, which symbolic shapes treat apart (broadcasting, squeezing).

The rule then, for every batch size a call can have (longer batches run in chunks of
``max_batch`` rows): a value computed from the request takes at most ``max_row_bytes``
per row, all such values together ``max_total_row_bytes`` per row; a value computed
only from stored tensors at most ``max_tensor_bytes``, all stored and such values
together ``max_constant_bytes``; every integer stays within ``max_int``. A graph that
breaks it, or whose sizes cannot be bounded, is refused before anything runs: a graph
cannot turn a small request into a huge allocation, and constant folding at load cannot
either. The bound is conservative (value ranges over-approximate), never optimistic.

>>> import torch
>>> from hybridnb.serve.graph import SafeGraph, graph_to_spec
>>> class Outer(torch.nn.Module):  # every row times every row: B x B x 128
...     def forward(self, x):
...         return (x[:, None, :] * x[None, :, :]).sum(1)
>>> spec, w = graph_to_spec(torch.export.export(Outer(), (torch.zeros(2, 128),),
...     dynamic_shapes=({0: torch.export.Dim("b", max=1 << 16)},)))
>>> try:
...     SafeGraph(spec, w, input_shape=[-1, 128])
... except Exception as exc:
...     print(exc)  # doctest: +ELLIPSIS
node ... aten.mul.Tensor): its result needs up to 33554432 bytes per input row; ...
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .graph_decode import GraphError, _Input, _Ref, _short, _Step, bind_env
from .graph_policy import GraphLimits

if TYPE_CHECKING:
    import torch

_RAISE = (" (for a bundle you trust: load_bundle(path, limits=GraphLimits(...)), "
          "hybridnb.serve.graph_policy)")
_NOISY = ("torch._subclasses.fake_tensor", "torch.utils._sympy.interp")
#: Arguments worth naming when a size is refused.
_SIZE_ARGS = ("size", "shape", "repeats", "sizes", "output_size", "scale_factors", "pad",
              "end", "start", "split_sizes", "normalized_shape", "padding")


@dataclass
class Shapes:
    """What the check learned: the output's row shape and dtype, and which slots of the
    environment depend only on stored tensors (those are folded at load)."""

    output_row: tuple[int, ...]
    output_dtype: torch.dtype
    constant: list[bool] = field(repr=False)


@functools.lru_cache(maxsize=1)
def _batch_source() -> Any:
    """A symbol source for the batch dimension (torch's own sources live in dynamo)."""
    import torch._guards as guards

    class BatchSource(guards.Source):
        @property
        def guard_source(self) -> Any:
            return guards.GuardSource.CONSTANT

        @property
        def _name_template(self) -> str:
            return "batch"

    return BatchSource()


class _Pass:
    """One run of the graph on fake tensors, checking each value against the limits."""

    def __init__(self, limits: GraphLimits, constant: list[bool], stored: int,
                 batch: int | None):
        import torch
        from torch._subclasses.fake_tensor import FakeTensorMode

        self.limits, self.constant = limits, constant
        self.row_total = 0.0
        self.const_total = stored  # bytes of the stored tensors, checked when parsed
        if batch is None:
            from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv
            from torch.utils._sympy.value_ranges import ValueRanges

            env = ShapeEnv()
            source = _batch_source()
            self.symbol = env.create_symbol(2, source=source, dynamic_dim=DimDynamic.DYNAMIC)
            self.batch: Any = env.create_symintnode(self.symbol, hint=2, source=source)
            self.span = (2, max(2, limits.max_batch))
            self.ranges = {self.symbol: ValueRanges(*self.span)}
            self.mode = FakeTensorMode(shape_env=env, allow_fallback_kernels=False)
        else:
            self.symbol = None
            self.batch = batch
            self.mode = FakeTensorMode(allow_fallback_kernels=False)
        self.torch = torch

    # -- bounds --------------------------------------------------------------------------

    def _range(self, value: Any) -> tuple[float, float] | None:
        """Lower and upper bounds of an int or SymInt over the batch range (``None``:
        unbounded, or beyond what value-range analysis can say)."""
        try:
            return self._try_range(value)
        except Exception:  # ValueRangeError, sympy failing on a hostile expression
            return None

    def _try_range(self, value: Any) -> tuple[float, float] | None:
        if isinstance(value, int):
            return float(value), float(value)
        import sympy
        from torch.utils._sympy.value_ranges import bound_sympy

        expr = sympy.sympify(value.node.expr)
        if self.symbol is None or not expr.free_symbols <= {self.symbol}:
            return None
        vr = bound_sympy(expr, self.ranges)
        try:
            return float(vr.lower), float(vr.upper)
        except (TypeError, ValueError):
            return None

    def _per_row(self, nbytes: Any) -> float | None:
        """An upper bound of ``nbytes / B`` over the batch range (``None``: unbounded)."""
        try:
            return self._try_per_row(nbytes)
        except Exception:
            return None

    def _try_per_row(self, nbytes: Any) -> float | None:
        if self.symbol is None:
            return float(nbytes) / self.batch
        import sympy
        from torch.utils._sympy.value_ranges import bound_sympy

        b, (lo, hi) = self.symbol, self.span
        expr = sympy.expand(sympy.sympify(
            nbytes.node.expr if isinstance(nbytes, self.torch.SymInt) else nbytes))
        if not expr.free_symbols <= {b}:
            return None
        # size / B <= the sum over the terms of size of each term's largest value / B.
        total = 0.0
        for term in sympy.Add.make_args(expr):
            coeff, factors = term.as_coeff_mul()
            power, other = 0, False
            for f in factors:
                if f == b:
                    power += 1
                elif f.is_Pow and f.base == b and f.exp.is_Integer and f.exp > 0:
                    power += int(f.exp)
                else:
                    other = True
            if not other:  # c * B**k / B is monotone: its largest value is at an end
                c = float(coeff)
                total += max(c * lo ** (power - 1), c * hi ** (power - 1))
                continue
            top = float(bound_sympy(term, self.ranges).upper)  # FloorDiv, Max, ...
            total += top / lo if top >= 0 else top / hi
        return total

    def check(self, step: _Step | None, value: Any, where: str) -> None:

        lim, torch = self.limits, self.torch
        slot_constant = step is not None and self.constant[step.slot]
        if isinstance(value, torch.Tensor):
            nbytes = value.numel() * value.element_size()
            hint = _hint(step)
            if slot_constant:
                if isinstance(nbytes, torch.SymInt):
                    raise GraphError(f"{where}: a constant whose size depends on the batch")
                self.const_total += int(nbytes)
                if nbytes > lim.max_tensor_bytes or self.const_total > lim.max_constant_bytes:
                    raise GraphError(
                        f"{where}: a tensor of {int(nbytes)} bytes{hint} (with stored and "
                        f"folded tensors {self.const_total}); at most "
                        f"{lim.max_tensor_bytes} a tensor and {lim.max_constant_bytes} in "
                        f"all are allowed: a graph may not allocate more{_RAISE}")
                return
            per_row = self._per_row(nbytes)
            if per_row is None:
                raise GraphError(f"{where}: its size{hint} cannot be bounded from the "
                                 "input's shape")
            self.row_total += per_row
            if per_row > lim.max_row_bytes:
                raise GraphError(
                    f"{where}: its result needs up to {per_row:.0f} bytes per input row"
                    f"{hint}; at most {lim.max_row_bytes} are allowed: a graph may not turn "
                    f"a small request into a huge allocation{_RAISE}")
            if self.row_total > lim.max_total_row_bytes:
                raise GraphError(
                    f"{where}: the values computed from the input reach "
                    f"{self.row_total:.0f} bytes per row in all; at most "
                    f"{lim.max_total_row_bytes} are allowed{_RAISE}")
        elif isinstance(value, (tuple, list)):
            for item in value:
                self.check(step, item, where)
        elif value is None or isinstance(value, (bool, float, torch.SymFloat, torch.SymBool)):
            return
        elif isinstance(value, (int, torch.SymInt)):
            bounds = self._range(value)
            if bounds is None or max(abs(bounds[0]), abs(bounds[1])) > lim.max_int:
                raise GraphError(f"{where}: computes an integer that is unbounded or beyond "
                                 f"±{lim.max_int} ({_short(value)})")
        else:
            raise GraphError(f"{where}: returns a {type(value).__name__}, which a graph "
                             "cannot hold")

    # -- the run -------------------------------------------------------------------------

    def run(self, inputs: Sequence[_Input], steps: Sequence[_Step], input_slot: int,
            row: tuple[int, ...], dtype: torch.dtype) -> Any:

        torch = self.torch
        env: list[Any] = [None] * (len(inputs) + len(steps))
        with self.mode:
            for i, item in enumerate(inputs):
                if i == input_slot:
                    env[i] = torch.empty([self.batch, *row], dtype=dtype)
                else:
                    env[i] = torch.empty(item.shape, dtype=getattr(torch, item.dtype))
            self.check(None, env[input_slot], "the input")
            for step in steps:
                args = bind_env(step.args, env)
                kwargs = {k: bind_env(v, env) for k, v in step.kwargs.items()}
                if step.python:
                    _check_python(step, args)
                try:
                    env[step.slot] = step.fn(*args, **kwargs)
                except GraphError:
                    raise
                except Exception as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise GraphError(f"{step.where}: the operator refuses its arguments "
                                     f"({_short(first, 300)}); the graph is malformed or "
                                     "was written for other inputs") from None
                self.check(step, env[step.slot], step.where)
        return env

    def output(self, value: Any) -> tuple[tuple[int, ...], torch.dtype]:
        torch = self.torch
        if not isinstance(value, torch.Tensor) or value.dim() < 1:
            raise GraphError("the output must be a tensor whose first dimension is the batch")
        first, rest = value.shape[0], value.shape[1:]
        if self.symbol is None:
            batch_first = first == self.batch
        else:
            batch_first = isinstance(first, torch.SymInt) and first.node.expr == self.symbol
        if not batch_first or any(isinstance(d, torch.SymInt) for d in rest):
            raise GraphError(f"the output has shape {list(value.shape)}; its first dimension "
                             "must be the batch and the others fixed")
        return tuple(int(d) for d in rest), value.dtype


def _hint(step: _Step | None) -> str:
    if step is None:
        return ""
    named = dict(zip(step.params, step.args, strict=True)) | step.kwargs
    shown = [f"{k}={_short(v, 60)}" for k, v in named.items()
             if k in _SIZE_ARGS and not isinstance(v, _Ref)]
    return f" (from {', '.join(shown)})" if shown else ""


def _check_python(step: _Step, args: list[Any]) -> None:
    import torch

    numbers = (int, float, torch.SymInt, torch.SymFloat, torch.SymBool)
    operands = args[1:] if step.fn.__name__ == "getitem" else args
    if step.fn.__name__ == "getitem" and not isinstance(args[0], (tuple, list)):
        raise GraphError(f"{step.where}: indexes a {type(args[0]).__name__}; only the "
                         "results of operators that return several values")
    if not all(isinstance(a, numbers) for a in operands):
        raise GraphError(f"{step.where}: works on numbers only, got "
                         f"{', '.join(type(a).__name__ for a in operands)}")


def check_sizes(inputs: Sequence[_Input], steps: Sequence[_Step], output: int,
                input_slot: int, row: tuple[int, ...], dtype: torch.dtype,
                limits: GraphLimits) -> Shapes:
    """Check every value's size for every batch size; raise ``GraphError`` at the first
    value beyond :class:`~hybridnb.serve.graph_policy.GraphLimits`."""
    import torch

    constant = [i != input_slot for i in range(len(inputs))]
    for step in steps:
        constant.append(all(constant[r] for r in step.refs))
    stored = sum(math.prod(i.shape) * getattr(torch, i.dtype).itemsize
                 for i in inputs if i.key is not None)
    found = []
    # A refused graph makes meta kernels and value ranges fail, which torch logs (ERROR,
    # WARNING); the GraphError says it better, so those loggers are quiet meanwhile.
    quiet = [logging.getLogger(n) for n in _NOISY]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        for batch in (None, 1):
            check = _Pass(limits, constant, stored, batch)
            env = check.run(inputs, steps, input_slot, row, dtype)
            found.append(check.output(env[output]))
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    if found[0] != found[1]:
        raise GraphError(f"the output is {found[1]} for one row but {found[0]} for more")
    return Shapes(found[0][0], found[0][1], constant)
