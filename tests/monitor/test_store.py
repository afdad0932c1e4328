"""The sample store: retention prunes series too, a query reads many series at once."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hybridnb.monitor.store import SampleStore


def test_series_left_without_samples_by_retention_are_pruned(tmp_path):
    store = SampleStore(tmp_path / "m.db", retention="10s")
    store.append([("gone_total", {"worker": str(i)}, 1.0) for i in range(5)], ts=0.0)
    store.append([("kept", {"job": "a"}, 1.0)], ts=0.0)
    assert store.series_count() == 6
    store.append([("kept", {"job": "a"}, 2.0)], ts=100.0)  # prunes: past 10 s of retention
    assert store.names() == ["kept"]
    assert store.series_count() == 1
    # A pruned series that comes back is a new series, with only its new samples.
    store.append([("gone_total", {"worker": "0"}, 7.0)], ts=105.0)
    [(_, labels, ts, values)] = store.select("gone_total")
    assert labels == {"worker": "0"} and ts.tolist() == [105.0] and values.tolist() == [7.0]


def test_a_second_writer_never_writes_to_a_pruned_series_id(tmp_path):
    # SQLite may give a deleted series' id to the next new series: a writer that cached
    # the old id must look it up again instead of writing into the other series.
    first = SampleStore(tmp_path / "m.db", retention="10s")
    second = SampleStore(tmp_path / "m.db", retention="10s")
    first.append([("x", {}, 1.0)], ts=0.0)
    second.append([("y", {}, 1.0)], ts=100.0)  # prunes x
    second.append([], ts=200.0)  # prunes y: no series left
    second.append([("w", {}, 3.0)], ts=300.0)
    first.append([("x", {}, 4.0)], ts=301.0)
    assert [(t.tolist(), v.tolist()) for _, _, t, v in second.select("w")] == [([300.0], [3.0])]
    assert [(t.tolist(), v.tolist()) for _, _, t, v in second.select("x")] == [([301.0], [4.0])]


def _fill(store: SampleStore, n_series: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Samples of ``n_series`` series of ``m`` (and noise in ``other``), some marked stale;
    returns what each series of ``m`` holds in time order, NaN where stale."""
    expected: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for t in range(20):
        ts = 1000.0 + 7 * t  # 133 s: two compactions of the head into chunks
        samples = [("m", {"i": str(i)}, float(i * 100 + t)) for i in range(n_series)
                   if (i + t) % 7]  # holes: series miss some rounds
        samples.append(("other", {"i": "0"}, -1.0))
        store.append(samples, ts=ts)
        for _, labels, value in samples[:-1]:
            expected.setdefault(("m", labels["i"]), []).append((ts, value))
        if t in (5, 12):
            stale = [("m", {"i": str(i)}) for i in range(0, n_series, 3)]
            store.mark_stale(stale, ts=ts + 0.5)
            for _, labels in stale:
                expected.setdefault(("m", labels["i"]), []).append((ts + 0.5, float("nan")))
    # History stored after the fact, inside the time of a compacted chunk.
    store.append_at([(("m", (("i", "1"),)), 1010.25, 42.0)])
    rows = expected[("m", "1")]
    rows.append((1010.25, 42.0))
    rows.sort(key=lambda r: r[0])
    return expected


def _traced_statements(monkeypatch) -> list[str]:
    statements: list[str] = []
    real = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return statements


@pytest.mark.parametrize("n_series", [3, 120])
def test_a_query_of_many_series_is_a_bounded_number_of_statements(tmp_path, monkeypatch,
                                                                   n_series):
    store = SampleStore(tmp_path / "m.db", retention="1h")
    expected = _fill(store, n_series)
    statements = _traced_statements(monkeypatch)
    result = store.select("m", 1003.0, 1100.0)
    # The connection's own pragma, then a fixed number of queries, whatever n_series is.
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 4, \
        statements
    assert len(statements) <= 6, statements
    got = {(name, labels["i"]): (ts, values) for name, labels, ts, values in result}
    want = {key: [(t, v) for t, v in rows if 1003.0 <= t <= 1100.0]
            for key, rows in expected.items()}
    assert set(got) == {key for key, rows in want.items() if rows}
    for key, (ts, values) in got.items():
        ts_want, values_want = (np.array(c) for c in zip(*want[key], strict=True))
        np.testing.assert_array_equal(ts, ts_want)
        np.testing.assert_array_equal(values, values_want)  # NaN at the same places
    # In series order, as before: the order the series were first stored.
    assert [("m", labels["i"]) for _, labels, _, _ in result] == [k for k in want if k in got]
