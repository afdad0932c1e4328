"""One query API over the embedded store and a real Prometheus.

``Monitor(backend="embedded")`` evaluates the PromQL subset of
:mod:`hybridnb.monitor.promql` over the local SQLite store; ``Monitor(backend=
"prometheus", url=...)`` passes PromQL to the server's HTTP API (``/api/v1/query_range``).
Both return the same long pandas DataFrame: ``time`` (UTC), ``series`` (a readable
label string), ``value``, and one column per label.

>>> import tempfile, os, time
>>> from hybridnb.monitor.store import SampleStore
>>> path = os.path.join(tempfile.mkdtemp(), "m.db")
>>> now = time.time()
>>> _ = SampleStore(path).append([("up", {"job": "a", "instance": "x"}, 1.0)], ts=now)
>>> Monitor(store_path=path).query("up", window="5m")[["job", "value"]].to_dict("records")
[{'job': 'a', 'value': 1.0}]
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OperationError, UsageError, did_you_mean
from .store import parse_duration

if TYPE_CHECKING:
    import pandas as pd

    from .store import SampleStore

logger = logging.getLogger(__name__)

BACKENDS = ("embedded", "prometheus")
#: Points a range query aims for when no step is given (plots need no more).
TARGET_POINTS = 300


def selector(metric: str, labels: dict[str, str] | None = None) -> str:
    """``metric{k="v",...}`` from a name and exact label values.

    >>> selector("up", {"job": "hybridnb-endpoint"})
    'up{job="hybridnb-endpoint"}'
    """
    if not labels:
        return metric
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


class Monitor:
    """Query metrics from the embedded store or a Prometheus server.

    Parameters
    ----------
    backend:
        ``"embedded"`` (default) or ``"prometheus"``.
    url:
        The Prometheus server (``http://127.0.0.1:9090``), for the prometheus backend.
    store_path:
        The embedded store's file (default ``$HYBRIDNB_HOME/metrics.db``).
    timeout:
        Seconds an HTTP query may take (prometheus backend).
    """

    def __init__(self, backend: str = "embedded", url: str | None = None, *,
                 store_path: str | Path | None = None, timeout: float = 10.0):
        if backend not in BACKENDS:
            raise UsageError(f"unknown monitor backend {backend!r}"
                             f"{did_you_mean(backend, BACKENDS)}; use one of {BACKENDS}")
        if backend == "prometheus" and not url:
            raise UsageError("the prometheus backend needs url='http://host:9090'")
        self.backend = backend
        self.url = url.rstrip("/") if url else None
        self.timeout = timeout
        self._store: SampleStore | None = None
        self._store_path = store_path

    @property
    def store(self) -> SampleStore:
        from .store import SampleStore

        if self._store is None:
            self._store = SampleStore(self._store_path)
        return self._store

    def __repr__(self) -> str:
        where = self.url if self.backend == "prometheus" else str(self.store.path)
        return f"Monitor({self.backend!r}, {where})"

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p>{escape(repr(self))}</p>"

    # -- queries -----------------------------------------------------------------

    def query(self, expr: str, labels: dict[str, str] | None = None, *,
              window: str | float = "15m", step: str | float | None = None,
              end: float | None = None) -> pd.DataFrame:
        """Evaluate ``expr`` (a metric name or PromQL) over the last ``window``.

        ``labels`` narrows a bare metric name to exact label values. ``step`` defaults to
        ``window / 300``, at least one second. A bare metric in the embedded backend
        returns its raw samples.

        Returns
        -------
        DataFrame with ``time``, ``series``, ``value`` and one column per label.
        """
        import numpy as np

        from .promql import Selector, parse

        if labels:
            expr = selector(expr, labels)
        span = parse_duration(window)
        end = time.time() if end is None else end
        step_s = parse_duration(step) if step is not None else max(1.0, span / TARGET_POINTS)
        if self.backend == "prometheus":
            return self._prometheus(expr, end - span, end, step_s)
        node = parse(expr)
        if isinstance(node, Selector) and node.range is None:
            return self._raw(node, end - span, end)
        from .promql import evaluate

        times = np.arange(end - span, end + step_s / 2, step_s)
        result = evaluate(node, self.store, times)
        if not isinstance(result, dict):
            result = {(): result}
        rows = []
        for key, arr in result.items():
            ok = ~np.isnan(arr)
            if ok.any():
                rows.append((dict(key), times[ok], arr[ok]))
        return _frame(rows)

    def _raw(self, sel: Any, start: float, end: float) -> pd.DataFrame:
        from .promql import _match

        rows = []
        for name, labels, ts, vals in self.store.select(sel.name, start, end):
            if all(_match(labels.get(k, ""), op, v) for k, op, v in sel.matchers):
                rows.append(({"__name__": name, **labels}, ts, vals))
        return _frame(rows)

    def _prometheus(self, expr: str, start: float, end: float, step: float) -> pd.DataFrame:
        import numpy as np

        data = self.api("/api/v1/query_range",
                        {"query": expr, "start": start, "end": end, "step": step})
        rows = []
        for item in data.get("result", []):
            values = np.asarray(item.get("values", []), dtype=float).reshape(-1, 2)
            rows.append((item.get("metric", {}), values[:, 0], values[:, 1]))
        return _frame(rows)

    def api(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET a Prometheus API path; its ``data``, or a clear error naming the URL."""
        import httpx

        url = f"{self.url}{path}"
        try:
            resp = httpx.get(url, params=params, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise OperationError(f"cannot reach Prometheus at {self.url} ({exc}); check that "
                                 "it runs and the URL is right") from None
        try:
            body = resp.json()
        except ValueError:
            raise OperationError(f"Prometheus at {self.url} answered {path} with HTTP "
                                 f"{resp.status_code} and no JSON") from None
        if body.get("status") != "success":
            error = body.get("error", f"HTTP {resp.status_code}")
            if body.get("errorType") == "bad_data":
                raise UsageError(f"Prometheus rejected the query: {error}")
            raise OperationError(f"Prometheus at {self.url}: {error}")
        data: dict[str, Any] = body.get("data") or {}
        return data

    # -- helpers -----------------------------------------------------------------

    def rate(self, metric: str, labels: dict[str, str] | None = None, *, over: str = "1m",
             by: list[str] | None = None, window: str | float = "15m",
             end: float | None = None) -> pd.DataFrame:
        """Per-second rate of a counter, summed by ``by`` labels.

        >>> Monitor(store_path=":memory:").rate_expr("x_total", by=["code"])
        'sum by (code) (rate(x_total[1m]))'
        """
        return self.query(self.rate_expr(metric, labels, over=over, by=by), window=window,
                          end=end)

    def rate_expr(self, metric: str, labels: dict[str, str] | None = None, *,
                  over: str = "1m", by: list[str] | None = None) -> str:
        return f"sum by ({', '.join(by or [])}) (rate({selector(metric, labels)}[{over}]))"

    def quantile(self, q: float, histogram: str, labels: dict[str, str] | None = None, *,
                 over: str = "1m", by: list[str] | None = None,
                 window: str | float = "15m", end: float | None = None) -> pd.DataFrame:
        """The ``q`` quantile of a histogram (name without ``_bucket``), by ``by`` labels."""
        if not 0 <= q <= 1:
            raise UsageError(f"quantile {q} is not between 0 and 1")
        groups = ", ".join(["le", *(by or [])])
        expr = (f"histogram_quantile({q}, sum by ({groups}) "
                f"(rate({selector(histogram + '_bucket', labels)}[{over}])))")
        return self.query(expr, window=window, end=end)

    def targets(self) -> list[dict[str, Any]]:
        """Scrape targets with health: from Prometheus' API, or ``up`` in the store."""
        if self.backend == "prometheus":
            data = self.api("/api/v1/targets")
            return [{"job": t["labels"].get("job"), "instance": t["labels"].get("instance"),
                     "name": t["labels"].get("name"), "up": t.get("health") == "up",
                     "error": t.get("lastError") or None, "role": t["labels"].get("role"),
                     "replica": t["labels"].get("replica")}
                    for t in data.get("activeTargets", [])]
        frame = self.query("up", window="5m")
        if frame.empty:
            return []
        last = frame.sort_values("time").groupby("series").tail(1)
        # A series whose last point is a staleness marker (NaN) is a target that is gone.
        def text(value: Any) -> Any:
            return None if value != value else value  # NaN: the label is absent

        return [{"job": r.get("job"), "instance": r.get("instance"),
                 "name": text(r.get("name")) or text(r.get("run")), "up": r["value"] == 1.0,
                 "error": None, "role": text(r.get("role")), "replica": text(r.get("replica"))}
                for r in last.to_dict("records") if r["value"] == r["value"]]


def _frame(rows: list[tuple[dict[str, str], Any, Any]]) -> pd.DataFrame:
    import pandas as pd

    keys = sorted({k for labels, _, _ in rows for k in labels} - {"__name__"})
    parts = []
    for labels, ts, vals in rows:
        shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        series = f"{labels.get('__name__', '')}{{{shown}}}"
        part = pd.DataFrame({"time": pd.to_datetime(ts, unit="s", utc=True),
                             "series": series, "value": vals})
        for k in keys:
            part[k] = labels.get(k)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["time", "series", "value", *keys])
    return pd.concat(parts, ignore_index=True)
