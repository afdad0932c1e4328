"""A small, tested subset of PromQL, evaluated over the embedded store.

Supported: selectors with ``=``, ``!=``, ``=~``, ``!~`` matchers; range selectors as
arguments of ``rate``, ``increase``, ``avg_over_time``, ``max_over_time``,
``min_over_time``; ``histogram_quantile(q, …)``; ``sum``, ``avg``, ``min``, ``max``,
``count`` with ``by``/``without``; ``time()``, ``abs``; ``+ - * /`` and comparisons
(``> < >= <= == !=``, with ``bool``), between vectors (matched on all labels but the
name, or ``on(…)``/``ignoring(…)``) and scalars. Anything else is a :class:`UsageError`
naming the expression, so a rule that evaluates here also evaluates in Prometheus.

Every expression is evaluated over a whole grid of times at once (numpy arrays, NaN
where a series has no value), so a range query costs one pass, not one per step.
``rate`` and ``increase`` follow Prometheus' own algorithm (``extrapolatedRate`` in its
``promql/functions.go``): the increase between the first and last samples of the window,
counter resets added back, extrapolated towards the window's edges (by at most half a
sample interval where the samples stop short of an edge, and never below zero), so the
same expression over the same samples gives Prometheus' answer; ``tests/monitor/
test_promql.py`` checks that against ``promtool test rules``.

>>> node = parse("sum by (route) (rate(hybridnb_endpoint_requests_total{code=~'5..'}[5m]))")
>>> node.op, node.by, node.expr.fn, node.expr.args[0].matchers, node.expr.args[0].range
('sum', ['route'], 'rate', [('code', '=~', '5..')], 300.0)
>>> metric_names(parse("up == 0"))
['up']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from .store import SampleStore

LOOKBACK = 300.0  # seconds a sample stays the current value, as in Prometheus

# ------------------------------------------------------------------------------ syntax


@dataclass
class Number:
    value: float


@dataclass
class Selector:
    name: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)
    range: float | None = None


@dataclass
class Call:
    fn: str
    args: list[Node]


@dataclass
class Agg:
    op: str
    expr: Node
    by: list[str] = field(default_factory=list)
    without: bool = False


@dataclass
class Binary:
    op: str
    lhs: Node
    rhs: Node
    bool: bool = False
    on: list[str] | None = None
    ignoring: list[str] | None = None


Node = Union[Number, Selector, Call, Agg, Binary]

_TOKEN = re.compile(r"""\s*(?:
    (?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![a-zA-Z_])
  | (?P<duration>\[[0-9a-z]+\])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/<>(){},=])
)""", re.X)

RANGE_FUNCTIONS = {"rate", "increase", "avg_over_time", "max_over_time", "min_over_time"}
AGGREGATIONS = {"sum", "avg", "min", "max", "count"}
_COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
_PRECEDENCE = [_COMPARISONS, {"+", "-"}, {"*", "/"}]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise UsageError(f"invalid expression {text!r}: unexpected {text[pos:pos+12]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def error(self, what: str) -> UsageError:
        return UsageError(f"invalid expression {self.text!r}: {what}")

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind):
            raise self.error(f"expected {value or kind}, found {v or 'the end'!r}")
        self.i += 1
        return v

    def parse(self) -> Node:
        node = self.binary(0)
        if self.i != len(self.toks):
            raise self.error(f"unexpected {self.peek()[1]!r}")
        return node

    def binary(self, level: int) -> Node:
        if level == len(_PRECEDENCE):
            return self.unary()
        lhs = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in _PRECEDENCE[level]:
            op = self.take()
            is_bool = False
            if self.peek() == ("ident", "bool"):
                if op not in _COMPARISONS:
                    raise self.error(f"bool after {op!r}")
                self.take()
                is_bool = True
            on = ignoring = None
            if self.peek() in (("ident", "on"), ("ident", "ignoring")):
                which = self.take()
                names = self.label_list()
                on, ignoring = (names, None) if which == "on" else (None, names)
            rhs = self.binary(level + 1)
            lhs = Binary(op, lhs, rhs, is_bool, on, ignoring)
        return lhs

    def unary(self) -> Node:
        if self.peek() == ("op", "-"):
            self.take()
            return Binary("*", Number(-1.0), self.unary())
        return self.primary()

    def label_list(self) -> list[str]:
        self.take("(")
        names = []
        while self.peek()[1] != ")":
            names.append(self.take(kind="ident"))
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return names

    def primary(self) -> Node:
        kind, value = self.peek()
        if kind == "number":
            self.take()
            return Number(float(value))
        if value == "(":
            self.take()
            node = self.binary(0)
            self.take(")")
            return node
        if kind != "ident":
            raise self.error(f"unexpected {value or 'end'!r}")
        self.take()
        if value in AGGREGATIONS:
            by, without = [], False
            if self.peek()[1] in ("by", "without"):
                without = self.take() == "without"
                by = self.label_list()
            self.take("(")
            expr = self.binary(0)
            self.take(")")
            if self.peek()[1] in ("by", "without"):
                without = self.take() == "without"
                by = self.label_list()
            return Agg(value, expr, by, without)
        if self.peek()[1] == "(":
            return self.call(value)
        return self.selector(value)

    def call(self, fn: str) -> Node:
        if fn not in RANGE_FUNCTIONS | {"histogram_quantile", "time", "abs"}:
            raise self.error(f"function {fn!r} is not in the supported subset "
                             f"({', '.join(sorted(RANGE_FUNCTIONS))}, histogram_quantile, "
                             "time, abs, sum/avg/min/max/count)")
        self.take("(")
        args: list[Node] = []
        while self.peek()[1] != ")":
            args.append(self.binary(0))
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        want = {"time": 0, "histogram_quantile": 2}.get(fn, 1)
        if len(args) != want:
            raise self.error(f"{fn}() takes {want} argument(s), got {len(args)}")
        if fn in RANGE_FUNCTIONS and not (isinstance(args[0], Selector) and args[0].range):
            raise self.error(f"{fn}() needs a range selector such as metric[5m]")
        if fn == "histogram_quantile" and not isinstance(args[0], Number):
            raise self.error("histogram_quantile() needs a number as its first argument")
        return Call(fn, args)

    def selector(self, name: str) -> Selector:
        from .store import parse_duration

        sel = Selector(name)
        if self.peek()[1] == "{":
            self.take()
            while self.peek()[1] != "}":
                label = self.take(kind="ident")
                op = self.take(kind="op")
                if op not in ("=", "!=", "=~", "!~"):
                    raise self.error(f"bad label matcher {op!r}")
                raw = self.take(kind="string")
                sel.matchers.append((label, op, _unquote(raw)))
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
        if self.peek()[0] == "duration":
            sel.range = parse_duration(self.take()[1:-1])
        return sel


def _unquote(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def parse(expr: str) -> Node:
    """The syntax tree of ``expr``; :class:`UsageError` naming it when it is invalid."""
    if not isinstance(expr, str) or not expr.strip():
        raise UsageError(f"invalid expression {expr!r}: it is empty")
    return _Parser(expr).parse()


def metric_names(node: Node) -> list[str]:
    """Metric names the expression selects, in order of appearance."""
    out: list[str] = []
    if isinstance(node, Selector):
        out.append(node.name)
    elif isinstance(node, Call):
        for arg in node.args:
            out += metric_names(arg)
    elif isinstance(node, Agg):
        out += metric_names(node.expr)
    elif isinstance(node, Binary):
        out += metric_names(node.lhs) + metric_names(node.rhs)
    return list(dict.fromkeys(out))


def check(expr: str) -> Node:
    """Parse ``expr`` and check every metric it names; errors name the expression."""
    from .names import check_metric

    node = parse(expr)
    for name in metric_names(node):
        check_metric(name, where=repr(expr))
    return node


# -------------------------------------------------------------------------- evaluation

LabelKey = tuple[tuple[str, str], ...]
Vector = dict[LabelKey, "np.ndarray"]
Value = Union[Vector, "np.ndarray"]  # a vector, or a scalar as an array over times


def evaluate(expr: str | Node, store: SampleStore, times: np.ndarray) -> Value:
    """Evaluate ``expr`` at every time in ``times`` over the samples in ``store``.

    Returns a dict from label tuples (with ``__name__`` where kept) to arrays over
    ``times`` (NaN where absent), or a plain array for a scalar expression.
    """
    import numpy as np

    node = parse(expr) if isinstance(expr, str) else expr
    return _Eval(store, np.asarray(times, dtype=float)).eval(node)


class _Eval:
    def __init__(self, store: SampleStore, times: np.ndarray):
        self.store = store
        self.t = times

    def eval(self, node: Node) -> Value:
        import numpy as np

        if isinstance(node, Number):
            return np.full(self.t.shape, node.value)
        if isinstance(node, Selector):
            if node.range is not None:
                raise UsageError(f"a range selector ({node.name}[…]) must be the argument "
                                 "of rate, increase or *_over_time")
            return self.instant(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Agg):
            return self.aggregate(node)
        return self.binary(node)

    def series(self, sel: Selector, lookback: float) -> list[tuple[LabelKey, Any, Any]]:
        out = []
        for name, labels, ts, vals in self.store.select(sel.name, self.t[0] - lookback,
                                                        self.t[-1]):
            if all(_match(labels.get(k, ""), op, v) for k, op, v in sel.matchers):
                key = tuple(sorted({**labels, "__name__": name}.items()))
                out.append((key, ts, vals))
        return out

    def instant(self, sel: Selector) -> Vector:
        import numpy as np

        out: Vector = {}
        for key, ts, vals in self.series(sel, LOOKBACK):
            idx = np.searchsorted(ts, self.t, side="right") - 1
            ok = idx >= 0
            safe = np.where(ok, idx, 0)
            ok &= (self.t - ts[safe]) <= LOOKBACK
            out[key] = np.where(ok, vals[safe], np.nan)
        return out

    def call(self, node: Call) -> Value:
        import numpy as np

        if node.fn == "time":
            return self.t.copy()
        if node.fn == "abs":
            return _map(self.eval(node.args[0]), np.abs)
        if node.fn == "histogram_quantile":
            q = float(node.args[0].value)  # type: ignore[union-attr]
            inner = self.eval(node.args[1])
            if not isinstance(inner, dict):
                raise UsageError("histogram_quantile() needs a vector of _bucket series")
            return _histogram_quantile(q, inner)
        sel = node.args[0]
        assert isinstance(sel, Selector) and sel.range is not None
        w = sel.range
        out: Vector = {}
        for key, ts, vals in self.series(sel, w):
            real = ~np.isnan(vals)  # staleness markers are no samples of a range
            ts, vals = ts[real], vals[real]
            if not len(ts):
                continue
            lo = np.searchsorted(ts, self.t - w, side="right")
            hi = np.searchsorted(ts, self.t, side="right") - 1
            res = np.full(self.t.shape, np.nan)
            if node.fn in ("rate", "increase"):
                res = _extrapolated(ts, vals, lo, hi, self.t, w, node.fn == "rate")
            else:
                reducers: dict[str, Callable[..., Any]] = {
                    "avg_over_time": np.mean, "max_over_time": np.max,
                    "min_over_time": np.min}
                reduce = reducers[node.fn]
                for i, (a, b) in enumerate(zip(lo, hi, strict=False)):
                    if b >= a:
                        res[i] = reduce(vals[a:b + 1])
            out[_drop_name(key)] = res
        return out

    def aggregate(self, node: Agg) -> Vector:
        import numpy as np

        inner = self.eval(node.expr)
        if not isinstance(inner, dict):
            raise UsageError(f"{node.op}() needs a vector, not a scalar")
        groups: dict[LabelKey, list[Any]] = {}
        for key, arr in inner.items():
            labels = dict(key)
            labels.pop("__name__", None)
            if node.without:
                kept = {k: v for k, v in labels.items() if k not in node.by}
            else:
                kept = {k: v for k, v in labels.items() if k in node.by}
            groups.setdefault(tuple(sorted(kept.items())), []).append(arr)
        out: Vector = {}
        for key, arrs in groups.items():
            m = np.vstack(arrs)
            present = ~np.isnan(m)
            any_ = present.any(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                if node.op == "count":
                    res = present.sum(axis=0).astype(float)
                elif node.op == "sum":
                    res = np.nansum(m, axis=0)
                elif node.op == "avg":
                    res = np.nansum(m, axis=0) / np.maximum(present.sum(axis=0), 1)
                else:
                    fill = np.inf if node.op == "min" else -np.inf
                    filled = np.where(present, m, fill)
                    res = filled.min(axis=0) if node.op == "min" else filled.max(axis=0)
            out[key] = np.where(any_, res, np.nan)
        return out

    def binary(self, node: Binary) -> Value:
        import numpy as np

        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        cmp = node.op in _COMPARISONS
        fn = _OPS[node.op]

        def apply(a: Any, b: Any, keep: Any) -> Any:
            with np.errstate(invalid="ignore", divide="ignore"):
                res = fn(a, b)
            if cmp and node.bool:
                return np.where(np.isnan(a) | np.isnan(b), np.nan, res.astype(float))
            if cmp:
                return np.where(res, keep, np.nan)
            return res

        if not isinstance(lhs, dict) and not isinstance(rhs, dict):
            return apply(lhs, rhs, lhs)
        if not isinstance(rhs, dict):
            assert isinstance(lhs, dict)
            return {(k if cmp and not node.bool else _drop_name(k)): apply(v, rhs, v)
                    for k, v in lhs.items()}
        if not isinstance(lhs, dict):
            return {(k if cmp and not node.bool else _drop_name(k)): apply(lhs, v, v)
                    for k, v in rhs.items()}
        right = {self.match_key(k, node): v for k, v in rhs.items()}
        out: Vector = {}
        for k, v in lhs.items():
            other = right.get(self.match_key(k, node))
            if other is not None:
                key = k if cmp and not node.bool else _drop_name(k)
                # One-to-one matching keeps the matched labels only, as Prometheus does.
                if node.on is not None:
                    key = tuple((a, b) for a, b in key if a in node.on)
                elif node.ignoring:
                    key = tuple((a, b) for a, b in key if a not in node.ignoring)
                out[key] = apply(v, other, v)
        return out

    @staticmethod
    def match_key(key: LabelKey, node: Binary) -> LabelKey:
        if node.on is not None:
            return tuple((k, v) for k, v in key if k in node.on)
        skip = {"__name__", *(node.ignoring or ())}
        return tuple((k, v) for k, v in key if k not in skip)


def _ops() -> dict[str, Callable[[Any, Any], Any]]:
    import operator

    return {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
            "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
            ">=": operator.ge, "<=": operator.le}


_OPS = _ops()


def _map(value: Value, fn: Callable[[Any], Any]) -> Value:
    if isinstance(value, dict):
        return {_drop_name(k): fn(v) for k, v in value.items()}
    return fn(value)


def _drop_name(key: LabelKey) -> LabelKey:
    return tuple((k, v) for k, v in key if k != "__name__")


def _match(value: str, op: str, pattern: str) -> bool:
    if op == "=":
        return value == pattern
    if op == "!=":
        return value != pattern
    hit = re.fullmatch(pattern, value) is not None
    return hit if op == "=~" else not hit


def _extrapolated(ts: np.ndarray, vals: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  times: np.ndarray, window: float, per_second: bool) -> np.ndarray:
    """Prometheus' ``extrapolatedRate`` for a counter, at every time at once.

    ``lo``/``hi`` index the first and last sample of each time's window. Times are
    rounded to milliseconds first, as Prometheus keeps them, so the arithmetic (in the
    same order as Prometheus') gives the same floats.
    """
    import numpy as np

    ok = hi > lo  # two samples at least
    a, b = np.where(ok, lo, 0), np.where(ok, hi, 0)
    # A drop is a counter reset: Prometheus adds the value before it back.
    drops = np.where(np.diff(vals, prepend=vals[0]) < 0,
                     np.concatenate([[0.0], vals[:-1]]), 0.0)
    resets = np.cumsum(drops)
    inc = (vals[b] - vals[a]) + (resets[b] - resets[a])
    ms = np.round(ts * 1000.0)
    start_ms, end_ms = np.round((times - window) * 1000.0), np.round(times * 1000.0)
    to_start = (ms[a] - start_ms) / 1000.0
    to_end = (end_ms - ms[b]) / 1000.0
    sampled = (ms[b] - ms[a]) / 1000.0
    with np.errstate(invalid="ignore", divide="ignore"):
        average = sampled / (b - a)
        # Counters are never negative: extrapolate no further back than where this one
        # would have been zero.
        to_zero = sampled * (vals[a] / inc)
        to_start = np.where((inc > 0) & (vals[a] >= 0) & (to_zero < to_start), to_zero,
                            to_start)
        threshold = average * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, average / 2)
        interval = interval + np.where(to_end < threshold, to_end, average / 2)
        result = inc * (interval / sampled)
        if per_second:
            result = result / window
    return np.where(ok, result, np.nan)


def _histogram_quantile(q: float, buckets: Vector) -> Vector:
    """Prometheus' algorithm: linear interpolation inside the bucket holding rank q·n."""
    import numpy as np

    groups: dict[LabelKey, list[tuple[float, Any]]] = {}
    for key, arr in buckets.items():
        labels = dict(key)
        le = labels.pop("le", None)
        labels.pop("__name__", None)
        if le is not None:
            groups.setdefault(tuple(sorted(labels.items())), []).append((float(le), arr))
    out: Vector = {}
    for key, pairs in groups.items():
        pairs.sort(key=lambda p: p[0])
        bounds = np.array([b for b, _ in pairs])
        counts = np.maximum.accumulate(np.vstack([a for _, a in pairs]), axis=0)
        res = np.full(counts.shape[1], np.nan)
        if len(bounds) >= 2 and np.isinf(bounds[-1]):
            for j in range(counts.shape[1]):
                col = counts[:, j]
                total = col[-1]
                if np.isnan(total) or total <= 0:
                    continue
                if q < 0 or q > 1:
                    res[j] = -np.inf if q < 0 else np.inf
                    continue
                rank = q * total
                b = int(np.argmax(col >= rank))
                if b == len(bounds) - 1:
                    res[j] = bounds[-2]
                    continue
                if b == 0 and bounds[0] <= 0:
                    res[j] = bounds[0]
                    continue
                start = 0.0 if b == 0 else bounds[b - 1]
                prev = 0.0 if b == 0 else col[b - 1]
                with np.errstate(invalid="ignore", divide="ignore"):
                    res[j] = start + (bounds[b] - start) * ((rank - prev) / (col[b] - prev))
        out[key] = res
    return out
