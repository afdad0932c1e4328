"""The embedded PromQL subset, checked against Prometheus itself.

The numbers are not computed by hand: the same series go into hybridnb's SQLite store
and into ``promtool test rules`` (Prometheus' own engine); every expression is evaluated
by both at the same times, and the answers must agree (to float rounding: the engines
may add in a different order). The expressions are the ones hybridnb uses — its default
alert rules and its dashboard queries — and one of each construct of the subset.
"""

from __future__ import annotations

import math
import re
import subprocess

import numpy as np
import pytest
import yaml

from hybridnb.errors import UsageError
from hybridnb.monitor.alerts import default_rules
from hybridnb.monitor.plots import QUERIES
from hybridnb.monitor.promql import check, evaluate, parse
from hybridnb.monitor.store import SampleStore, parse_duration

INTERVAL = 15.0  # seconds between samples, as promtool's ``interval``
STEPS = 40
# Evaluation times off the sample grid: no sample sits exactly on a window's edge, where
# Prometheus 2 (closed windows) and 3 (left-open) differ; hybridnb follows 3.
TIMES = [97.0, 172.0, 307.0, 392.0, 457.0, 577.0]
REQ = "hybridnb_endpoint_requests_total"
DUR = "hybridnb_endpoint_request_duration_seconds_bucket"
# promtool loads the samples as its evaluation clock advances: tick every second, so a
# query at any whole second sees every sample up to it.
PROMTOOL = {"rule_files": [], "evaluation_interval": "1s"}
BOUNDS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "+Inf"]


def _series() -> dict[tuple[str, tuple[tuple[str, str], ...]], list[float | None]]:
    """What both engines get: counters with a reset and a gap, histograms, gauges."""
    rng = np.random.default_rng(7)
    out: dict[tuple[str, tuple[tuple[str, str], ...]], list[float | None]] = {}

    def add(metric: str, values: list[float | None], **labels: str) -> None:
        out[(metric, tuple(sorted(labels.items())))] = values

    route = "/v2/models/m/infer"
    steps = range(STEPS)
    # 10/s on a, reset to 30 at step 20 (a restarted replica); 1/s on b, with a gap.
    add(REQ, [150.0 * i if i < 20 else 30.0 + 150.0 * (i - 20) for i in steps],
        instance="a", code="200", route=route, job="hybridnb-endpoint", replica="replica-0")
    add(REQ, [3.0 + 7.0 * i for i in steps], instance="a", code="500", route=route,
        job="hybridnb-endpoint", replica="replica-0")
    add(REQ, [None if 25 <= i <= 28 else 15.0 * i + 1 for i in steps], instance="b",
        code="200", route=route, job="hybridnb-endpoint", replica="replica-1")
    for inst, scale in (("a", 1.0), ("b", 3.0)):
        totals = np.zeros(len(BOUNDS))
        series: list[list[float | None]] = [[] for _ in BOUNDS]
        for _ in steps:
            per_bucket = rng.integers(0, 40, len(BOUNDS) - 1) * scale
            totals += np.concatenate([np.cumsum(per_bucket), [per_bucket.sum()]])
            for j, v in enumerate(totals):
                series[j].append(float(v))
        for le, values in zip(BOUNDS, series, strict=True):
            add(DUR, values, instance=inst, le=le, job="hybridnb-endpoint",
                replica=f"replica-{'ab'.index(inst)}")
    add("up", [1.0] * STEPS, instance="a", job="hybridnb-endpoint", replica="replica-0",
        role="replica")
    add("up", [1.0 if i < 30 else 0.0 for i in steps], instance="b",
        job="hybridnb-endpoint", replica="replica-1", role="replica")
    add("up", [1.0] * STEPS, instance="r", job="hybridnb-endpoint", role="router")
    add("hybridnb_endpoint_queue_depth", [float(v) for v in rng.integers(0, 6, STEPS)],
        instance="a", job="hybridnb-endpoint", replica="replica-0")
    add("hybridnb_train_loss", [2.0 / (1 + i) for i in steps], run="digits",
        job="hybridnb-train")
    add("hybridnb_train_last_step_timestamp_seconds",
        [INTERVAL * min(i, 20) for i in steps], run="digits", job="hybridnb-train")
    for kind, base in (("managed", 2e8), ("unmanaged", 9e8), ("spilled", 5e9)):
        add("dask_worker_memory_bytes", [base + 1e6 * i for i in steps], instance="w1",
            type=kind, job="hybridnb-dask-worker", name="etl")
    add("dask_scheduler_workers", [2.0 if i < 30 else 1.0 for i in steps], instance="s",
        state="running", job="hybridnb-dask", name="etl")
    return out


#: Constructs of the subset, one or more each (hybridnb's own uses come on top).
CONSTRUCTS = [
    f"rate({REQ}[1m])",
    f"rate({REQ}[2m])",
    f'increase({REQ}{{instance="b"}}[5m])',
    f"sum by (instance) (rate({REQ}[1m]))",
    f"sum without (route, code) (rate({REQ}[1m]))",
    f'sum by (instance) (rate({REQ}{{code=~"5.."}}[2m])) / sum by (instance) (rate({REQ}[2m]))',
    f'rate({REQ}{{code!="200"}}[1m])',
    f'rate({REQ}{{code!~"2.."}}[1m]) * 60',
    "count without (instance, replica, role) (up)",
    "count by (job) (up == 1)",
    "avg(up)", "min by (role) (up)", "max(up)",
    "up == 0", "up > bool 0", "up != 1", "-up", "1 - up",
    "avg_over_time(hybridnb_endpoint_queue_depth[1m])",
    "max_over_time(hybridnb_endpoint_queue_depth[2m])",
    "min_over_time(hybridnb_endpoint_queue_depth[2m])",
    "abs(hybridnb_endpoint_queue_depth - 3)",
    "time() - hybridnb_train_last_step_timestamp_seconds",
    "time() - 60", "2 * 3 + 1",
    f"sum by (instance) (rate({REQ}[1m])) / on (instance) sum by (instance) "
    f"(rate({REQ}[2m]))",
    f'rate({REQ}{{code="500"}}[1m]) / ignoring (code) rate({REQ}{{code="500"}}[2m])',
    *[f"histogram_quantile({q}, sum by (le, instance) (rate({DUR}[1m])))"
      for q in (0.5, 0.9, 0.99, 1.0)],
    f"histogram_quantile(0.95, sum by (le) (rate({DUR}[2m])))",
    'sum by (instance) (dask_worker_memory_bytes{type!="spilled"}) / 1073741824',
]


def _expressions() -> list[str]:
    rules = [r.expr for r in default_rules(p99_seconds=0.05, error_ratio=0.02,
                                           stall_minutes=1, worker_memory_bytes=1e9)]
    return list(dict.fromkeys([*CONSTRUCTS, *rules, *QUERIES.values()]))


def _fmt(value: float) -> str:
    return "_" if value is None else repr(float(value))


def _selector(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{inner}}}"


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s"


def _samples(result: object) -> list[tuple[dict[str, str], float]]:
    """hybridnb's answer at one time as (labels, value) pairs; a scalar has no labels."""
    if not isinstance(result, dict):
        value = float(np.asarray(result)[0])
        return [] if math.isnan(value) else [({}, value)]
    return [(dict(key), float(arr[0])) for key, arr in result.items()
            if not math.isnan(arr[0])]


def _labels_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


_SAMPLE = re.compile(r'(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\}) ([^\s,]+)')


def _parse_promtool(text: str) -> list[tuple[str, float, dict[str, float], dict[str, float]]]:
    """promtool's failures: (expression, time, expected, got), samples by label text."""
    out = []
    blocks = re.findall(r'expr: "((?:[^"\\]|\\.)*)", time: (\S+),\n\s+exp: (.*)\n\s+got: (.*)',
                        text)
    for expr, at, exp, got in blocks:
        def samples(line: str) -> dict[str, float]:
            return {k: float(v) for k, v in _SAMPLE.findall(line)} if line != "nil" else {}

        out.append((expr.encode().decode("unicode_escape"), parse_duration(at),
                    samples(exp), samples(got)))
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The series in a real store, and the same series as promtool ``input_series``."""
    path = tmp_path_factory.mktemp("promql")
    store = SampleStore(path / "m.db", retention="1000d")
    series = _series()
    for i in range(STEPS):
        store.append([(name, dict(labels), values[i]) for (name, labels), values
                      in series.items() if values[i] is not None], ts=INTERVAL * i)
    inputs = [{"series": _selector(name, labels),
               "values": " ".join(_fmt(v) for v in values)}
              for (name, labels), values in series.items()]
    return store, inputs, path


def test_every_expression_hybridnb_uses_agrees_with_prometheus(loaded, promtool):
    store, inputs, path = loaded
    tests, ours = [], {}
    for expr in _expressions():
        node = check(expr)
        for at in TIMES:
            got = _samples(evaluate(node, store, np.array([at])))
            ours[(expr, at)] = {_labels_text(labels): v for labels, v in got}
            tests.append({"expr": expr, "eval_time": _duration(at),
                          "exp_samples": [{"labels": _labels_text(labels), "value": v}
                                          for labels, v in got]})
    assert sum(bool(v) for v in ours.values()) > 0.8 * len(ours), "too few answers"
    file = path / "promql_test.yml"
    file.write_text(yaml.safe_dump({**PROMTOOL, "tests": [{
        "interval": _duration(INTERVAL), "input_series": inputs,
        "promql_expr_test": tests}]}, sort_keys=False))
    run = subprocess.run([promtool, "test", "rules", str(file)], capture_output=True,
                         text=True, timeout=120)
    if run.returncode == 0:
        return  # identical to the last bit
    failures = _parse_promtool(run.stdout + run.stderr)
    assert failures, f"promtool failed without a comparison:\n{run.stdout}{run.stderr}"
    wrong = []
    for expr, at, expected, got in failures:
        same_series = set(expected) == set(got)
        close = same_series and all(
            math.isclose(expected[k], got[k], rel_tol=1e-12, abs_tol=1e-12) for k in got)
        if not close:
            wrong.append(f"{expr} at {at:g}s\n  hybridnb:   {expected}\n  Prometheus: {got}")
    assert not wrong, "hybridnb and Prometheus disagree:\n" + "\n".join(wrong)


def test_comparison_notices_a_disagreement(loaded, promtool):
    """The check above can fail: one wrong value makes promtool and the parser say so."""
    store, inputs, path = loaded
    expr = f"sum by (instance) (rate({REQ}[1m]))"
    got = _samples(evaluate(expr, store, np.array([172.0])))
    labels, value = got[0]
    file = path / "wrong.yml"
    file.write_text(yaml.safe_dump({**PROMTOOL, "tests": [{
        "interval": "15s", "input_series": inputs, "promql_expr_test": [{
            "expr": expr, "eval_time": "172s",
            "exp_samples": [{"labels": _labels_text(lab), "value": v * (1.01 if lab == labels
                                                                         else 1.0)}
                            for lab, v in got]}]}]}))
    run = subprocess.run([promtool, "test", "rules", str(file)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1
    [(seen, at, expected, answer)] = _parse_promtool(run.stdout + run.stderr)
    assert seen == expr and at == 172.0
    assert answer[_labels_text(labels)] == pytest.approx(value, rel=1e-12)
    assert expected[_labels_text(labels)] == pytest.approx(value * 1.01, rel=1e-12)


def test_staleness_after_lookback(tmp_path):
    s = SampleStore(tmp_path / "m.db")
    s.append([("up", {"instance": "a"}, 1.0)], ts=1000.0)
    assert _samples(evaluate("up", s, np.array([1000.0 + 299])))
    assert _samples(evaluate("up", s, np.array([1000.0 + 301]))) == []


def test_range_evaluation_is_one_pass_over_a_grid(loaded):
    store, _, _ = loaded
    times = np.array(TIMES)
    grid = evaluate(f'rate({REQ}{{instance="a", code="500"}}[1m])', store, times)
    one_by_one = [evaluate(f'rate({REQ}{{instance="a", code="500"}}[1m])', store,
                           np.array([t])) for t in TIMES]
    (arr,) = grid.values()
    assert arr.tolist() == [next(iter(r.values()))[0] for r in one_by_one]


@pytest.mark.parametrize("expr, words", [
    ("rate(up)", "range selector"),
    ("sum by (x (up)", "expected"),
    ("topk(3, up)", "not in the supported subset"),
    ("up{job=~}", "expected"),
    ("", "empty"),
])
def test_bad_expressions_name_themselves(expr, words):
    with pytest.raises(UsageError, match=words) as info:
        parse(expr)
    assert repr(expr) in str(info.value)


def test_unknown_metric_is_named_with_a_suggestion():
    with pytest.raises(UsageError, match=r"hybridnb_endpoint_queue_dept.*did you mean "
                                         "'hybridnb_endpoint_queue_depth'"):
        check("hybridnb_endpoint_queue_dept > 3")
    check("dask_scheduler_workers > 0")  # a peer's family: allowed by prefix


def test_durations():
    assert parse_duration("1m30s") == 90.0
    with pytest.raises(UsageError, match="invalid duration '5 minutes'"):
        parse_duration("5 minutes")


def test_retention_prunes(tmp_path):
    s = SampleStore(tmp_path / "r.db", retention="10s")
    s.append([("up", {}, 1.0)], ts=0.0)
    s.append([("up", {}, 1.0)], ts=100.0)
    [(_, _, ts, _)] = s.select("up")
    assert ts.tolist() == [100.0]
