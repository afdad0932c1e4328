"""The embedded PromQL subset against hand-computed answers over a real SQLite store."""

from __future__ import annotations

import numpy as np
import pytest

from hybridnb.errors import UsageError
from hybridnb.monitor.promql import check, evaluate, parse
from hybridnb.monitor.store import SampleStore, parse_duration


@pytest.fixture
def store(tmp_path):
    s = SampleStore(tmp_path / "m.db", retention="2h")
    # A counter growing 10/s on instance a (reset at t=60) and 1/s on b; 1 s scrapes.
    for t in range(0, 121):
        a = 10.0 * (t if t < 60 else t - 59)  # restarts from 0 just before t=60
        s.append([("req_total", {"instance": "a", "code": "200"}, a),
                  ("req_total", {"instance": "a", "code": "500"}, 0.5 * t),
                  ("req_total", {"instance": "b", "code": "200"}, 1.0 * t),
                  ("up", {"instance": "a"}, 1.0), ("up", {"instance": "b"}, 0.0)],
                 ts=1000.0 + t)
    return s


def one(result):
    assert isinstance(result, dict)
    return {dict(k).get("instance", "") + "/" + dict(k).get("code", ""): v[0]
            for k, v in result.items() if not np.isnan(v[0])}


def test_rate_survives_a_counter_reset(store):
    got = one(evaluate("rate(req_total[30s])", store, np.array([1070.0])))
    assert got["a/200"] == pytest.approx(10.0)
    assert got["b/200"] == pytest.approx(1.0)
    inc = one(evaluate("increase(req_total{instance='b'}[1m])", store, np.array([1100.0])))
    assert inc == {"b/200": pytest.approx(60.0)}


def test_sum_by_and_ratio(store):
    expr = ('sum by (instance) (rate(req_total{code=~"5.."}[1m])) / '
            "sum by (instance) (rate(req_total[1m]))")
    got = one(evaluate(expr, store, np.array([1050.0])))
    assert got == {"a/": pytest.approx(0.5 / 10.5)}
    assert one(evaluate("sum(up)", store, np.array([1050.0]))) == {"/": 1.0}
    assert one(evaluate("count without (instance) (up)", store, np.array([1050.0]))) \
        == {"/": 2.0}


def test_comparisons_filter_and_bool(store):
    assert list(one(evaluate("up == 0", store, np.array([1050.0])))) == ["b/"]
    assert one(evaluate("up > bool 0", store, np.array([1050.0]))) == {"a/": 1.0, "b/": 0.0}
    assert one(evaluate("time() - 1000", store, np.array([1050.0])) and
               {(): np.array([50.0])}) == {"/": 50.0}


def test_staleness_after_lookback(store):
    # Samples end at t=1120: five minutes later the series is gone.
    assert one(evaluate("up", store, np.array([1120.0 + 299]))) != {}
    assert one(evaluate("up", store, np.array([1120.0 + 301]))) == {}


def test_histogram_quantile_matches_prometheus(tmp_path):
    s = SampleStore(tmp_path / "h.db")
    # 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.5], 10 in (0.5, 1]; none above.
    for t, scale in ((0.0, 0), (60.0, 1)):
        s.append([("lat_seconds_bucket", {"le": le, "instance": "a"}, scale * n)
                  for le, n in (("0.1", 50), ("0.5", 90), ("1.0", 100), ("+Inf", 100))],
                 ts=t)
    q = lambda p: one(evaluate(  # noqa: E731
        f"histogram_quantile({p}, sum by (le, instance) (rate(lat_seconds_bucket[2m])))",
        s, np.array([60.0])))["a/"]
    assert q(0.5) == pytest.approx(0.1)
    assert q(0.25) == pytest.approx(0.05)
    assert q(0.7) == pytest.approx(0.1 + 0.4 * (70 - 50) / 40)
    assert q(0.99) == pytest.approx(0.5 + 0.5 * (99 - 90) / 10)


def test_range_evaluation_is_one_pass(store):
    times = np.arange(1030.0, 1121.0, 10.0)
    res = evaluate("rate(req_total{instance='b'}[30s])", store, times)
    (arr,) = res.values()
    assert np.allclose(arr, 1.0)


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
