"""What the sidebar lists besides clusters: sites, plans, runs, endpoints, alerts, metrics.

Each function is one library call for one route. They read the state store and the files
and ``/metrics`` pages its records name, with short timeouts; none starts anything.
Endpoints and runs are owned by the kernel or command that started them: scaling an
endpoint or changing its canary share writes the desired state to its record, which the
owner's deployment applies (:meth:`hybridnb.serve.deployment.Deployment.reconcile_desired`);
stopping a run stops its processes.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FieldError, UsageError
from ..state import Kind, Record, StateStore, Status
from .cache import Remembered, refresh
from .models import (
    Alert,
    Capacity,
    Cost,
    Endpoint,
    EndpointPatch,
    MetricSeries,
    PlanAnswer,
    PlanRanked,
    PlanRejected,
    PlanRequest,
    Run,
    Site,
    Summary,
)

if TYPE_CHECKING:
    from ..config import HybridConfig
    from ..monitor.alerts import Rule

ASK_TIMEOUT = 0.5
_lock = threading.Lock()
_run_metrics: dict[str, tuple[tuple[float, int], dict[str, float]]] = {}


def _find(store: StateStore, kind: Kind, record_id: str) -> Record:
    try:
        rec = store.get(record_id)
    except KeyError:
        rec = None
    if rec is None or rec.kind is not kind:
        raise FieldError(f"no {kind.value} {record_id!r}", field="id", reason="not_found")
    return rec


# -- sites and plans -------------------------------------------------------------------


def sites(config: HybridConfig) -> list[Site]:
    return [Site(name=s.name, tier=s.tier, backend=s.backend,
                 capacity=Capacity(**s.capacity.model_dump()),
                 classifications=list(s.classifications), cost=Cost(**s.cost.model_dump()))
            for s in config.sites.values()]


def plan(request: PlanRequest, config: HybridConfig) -> PlanAnswer:
    """The planner's answer, explained; a plan no site satisfies is a 422 naming a field."""
    from ..notebooks.jobs import explain, field_of
    from ..placement import plan as make_plan

    try:
        result = make_plan(request.kind, cpu=request.cpu, gpu=request.gpu,
                           memory=request.memory, hours=request.hours, data=request.data,
                           budget=request.budget, deadline=request.deadline,
                           tiers=request.tiers, config=config)
    except UsageError as exc:
        text = str(exc)
        field = next((f for f in ("kind", "memory", "tier", "dataset") if f in text), None)
        raise FieldError(text, field={"dataset": "data", "tier": "tiers"}.get(
            field or "", field)) from None
    if result.chosen is None:
        lines = "; ".join(f"{r.site}: {', '.join(r.reasons)}" for r in result.rejected)
        raise FieldError(f"no site can run this {result.request.describe()} "
                         f"({lines or 'no sites configured'})", field=field_of(result),
                         reason="unsatisfiable")

    def score(c: Any) -> float:
        return c.total_hours if result.policy == "fastest" else c.total_cost

    return PlanAnswer(
        chosen=result.chosen.site, policy=result.policy,
        ranked=[PlanRanked(site=c.site, tier=c.tier, rank=c.rank, score=score(c),
                           cost_usd=c.total_cost, hours=c.total_hours, reasons=list(c.notes))
                for c in result.choices],
        rejected=[PlanRejected(site=r.site, tier=r.tier, reasons=list(r.reasons),
                               kinds=[k.value for k in r.kinds]) for r in result.rejected],
        explanation=explain(result, result.chosen.site))


# -- runs --------------------------------------------------------------------------------


def _metrics_of(run_dir: str | None) -> dict[str, float]:
    """The run's latest values, read again only when its metrics file changed."""
    from ..train.metrics import METRICS, latest_values, read_metrics

    if not run_dir:
        return {}
    path = Path(run_dir) / METRICS
    try:
        st = path.stat()
    except OSError:
        return {}
    key = (st.st_mtime, st.st_size)
    with _lock:
        hit = _run_metrics.get(run_dir)
    if hit is not None and hit[0] == key:
        return hit[1]
    rows = read_metrics(run_dir)
    values = latest_values(rows)
    for row in rows:
        if row.get("kind") == "step" and row.get("step") is not None:
            values["step"] = float(row["step"])
        if row.get("epoch") is not None:
            values["epoch"] = float(row["epoch"])
    with _lock:
        _run_metrics[run_dir] = (key, values)
    return values


def runs(store: StateStore, *, include_ended: bool = False) -> list[Run]:
    refresh(store)
    return [Run(id=r.id, name=r.name, site=r.site, status=r.status, launcher=r.backend,
                metrics=_metrics_of(r.spec.get("run_dir")), run_dir=r.spec.get("run_dir"),
                error=r.error, created_at=r.created_at)
            for r in store.list(Kind.run, active=None if include_ended else True)]


def stop_run(store: StateStore, run_id: str, grace: float = 10.0) -> Run:
    """Stop a run's launcher and ranks (the kernel that awaited it sees it end)."""
    from ..cleanup import terminate

    rec = _find(store, Kind.run, run_id)
    if rec.status.active:
        if not rec.local:
            raise FieldError(f"run {rec.name!r} was started on host {rec.host}; stop it there",
                             field="id", reason="conflict")
        store.update(rec.id, status=Status.stopping, message="stop asked from the sidebar")
        terminate(rec, grace=grace)
        store.update(rec.id, status=Status.stopped, message="stopped from the sidebar")
    rec = store.get(rec.id)
    return Run(id=rec.id, name=rec.name, site=rec.site, status=rec.status, launcher=rec.backend,
               metrics=_metrics_of(rec.spec.get("run_dir")), run_dir=rec.spec.get("run_dir"),
               error=rec.error, created_at=rec.created_at)


# -- endpoints ------------------------------------------------------------------------------


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A quantile from cumulative histogram buckets ``(le, count)``, as Prometheus does."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            span = count - below
            return lower + (le - lower) * ((rank - below) / span if span else 0.0)
        lower, below = le, count
    return lower


def _latency_of(url: str) -> dict[str, float] | None:
    from ..exposition import parse
    from ..monitor.scrape import http_get
    from ..monitor.targets import metrics_url

    try:
        text = http_get(metrics_url(url), ASK_TIMEOUT).decode("utf-8", errors="replace")
    except Exception:  # down or busy: no numbers this time
        return None
    samples = parse(text)
    for family in ("hybridnb_router_request_duration_seconds",
                   "hybridnb_endpoint_request_duration_seconds"):
        per_le: dict[float, float] = {}
        for name, labels, value in samples:
            if name == f"{family}_bucket":
                le = float(labels.get("le", "inf").replace("+Inf", "inf"))
                per_le[le] = per_le.get(le, 0.0) + value
        if per_le:
            buckets = sorted(per_le.items())
            p50, p99 = _quantile(buckets, 0.5), _quantile(buckets, 0.99)
            return {"requests": buckets[-1][1],
                    **({"p50_ms": p50 * 1000} if p50 is not None else {}),
                    **({"p99_ms": p99 * 1000} if p99 is not None else {})}
    return {}


_latency = Remembered(_latency_of)


def _latencies(records: list[Record]) -> dict[str, dict[str, float] | None]:
    ask = {r.id: str(r.address) for r in records if r.status is Status.running and r.address}
    answers = _latency.get_many(set(ask.values()))
    return {rid: answers[url] for rid, url in ask.items()}


def _endpoint(rec: Record, latency: dict[str, float] | None) -> Endpoint:
    spec = rec.spec
    replicas = spec.get("replicas")
    stable = replicas.get("stable") if isinstance(replicas, dict) else None
    canary = int(replicas.get("canary") or 0) if isinstance(replicas, dict) else 0
    versions = [Path(b).name for b in (spec.get("bundle"), spec.get("canary")) if b]
    latency = latency or {}
    return Endpoint(id=rec.id, name=rec.name, site=rec.site, status=rec.status, url=rec.address,
                    replicas=stable, canary_replicas=canary, versions=versions,
                    canary_percent=float(spec.get("canary_percent") or 0.0),
                    p50_ms=latency.get("p50_ms"), p99_ms=latency.get("p99_ms"),
                    requests=latency.get("requests"), desired=spec.get("desired"),
                    applied=spec.get("applied"),
                    controllable=rec.status.active and isinstance(replicas, dict),
                    error=rec.error, created_at=rec.created_at)


def endpoints(store: StateStore, *, include_ended: bool = False) -> list[Endpoint]:
    refresh(store)
    records = store.list(Kind.endpoint, active=None if include_ended else True)
    latency = _latencies(records)
    return [_endpoint(r, latency.get(r.id)) for r in records]


def patch_endpoint(store: StateStore, endpoint_id: str, patch: EndpointPatch) -> Endpoint:
    """Record the wanted replicas and canary share; the endpoint's owner applies them."""
    rec = _find(store, Kind.endpoint, endpoint_id)
    if not rec.status.active:
        raise FieldError(f"endpoint {rec.name!r} is {rec.status.value}", field="id",
                         reason="conflict")
    if not isinstance(rec.spec.get("replicas"), dict):
        raise FieldError(f"endpoint {rec.name!r} is a single server ('hybridnb serve'): it "
                         "has no replicas to scale; deploy it with hybridnb.deploy",
                         field="id", reason="conflict")
    if patch.canary_percent is not None and not rec.spec.get("canary"):
        raise FieldError(f"endpoint {rec.name!r} has no canary: start one from its notebook "
                         "(endpoint.canary(bundle, percent)) first", field="canary_percent",
                         reason="conflict")
    old = rec.spec.get("desired") or {}
    desired = {**old, "generation": int(old.get("generation") or 0) + 1,
               **patch.model_dump(exclude_none=True)}
    rec = store.merge_spec(rec.id, {"desired": desired},
                           message=f"desired: {json.dumps(desired)}")
    return _endpoint(rec, None)


def stop_endpoint(store: StateStore, endpoint_id: str, grace: float = 10.0) -> Endpoint:
    """Stop an endpoint: its record says stopped (its owner stops replacing replicas),
    then its replica processes are stopped."""
    from ..cleanup import terminate

    rec = _find(store, Kind.endpoint, endpoint_id)
    if rec.status.active:
        if not rec.local:
            raise FieldError(f"endpoint {rec.name!r} runs on host {rec.host}; stop it there",
                             field="id", reason="conflict")
        store.update(rec.id, status=Status.stopped, message="stopped from the sidebar")
        # The owner's health loop looks at the record every half second: give it that
        # long to stop replacing replicas before they go.
        time.sleep(1.0)
        terminate(store.get(rec.id), grace=grace)
    return _endpoint(store.get(rec.id), None)


# -- monitoring ------------------------------------------------------------------------------


def alerts(rules: list[Rule], *, store_path: str | None = None,
           now: float | None = None) -> list[Alert]:
    """Each rule's state now, from the embedded metrics store.

    The store keeps samples, not alert state: the rules are replayed over the last
    ``for`` duration of each (in at most 8 steps), with :class:`AlertManager`'s own
    pending → firing logic, so a rule reads firing only when it held for its ``for``.
    """
    import numpy as np

    from ..monitor.alerts import AlertManager
    from ..monitor.store import SampleStore

    now = time.time() if now is None else now
    store = SampleStore(store_path)
    try:
        out: list[Alert] = []
        for rule in rules:
            manager = AlertManager([rule], store)
            lookback = rule.for_seconds
            steps = np.linspace(now - lookback, now, 8) if lookback else np.array([now])
            for t in steps:
                manager.evaluate(float(t))
            last: dict[tuple[tuple[str, str], ...], Any] = {}
            for event in manager.history:
                last[tuple(sorted(event.labels.items()))] = event
            active = [e for e in last.values() if e.state in ("pending", "firing")]
            if not active:
                out.append(Alert(name=rule.name, state="inactive", severity=rule.severity,
                                 threshold=rule.expr, summary=rule.summary))
            for e in active:
                out.append(Alert(name=rule.name, state=e.state, severity=rule.severity,
                                 value=e.value, threshold=rule.expr, since=e.time,
                                 summary=rule.summary, labels=e.labels))
        return out
    finally:
        store.close()


def metrics(query: str | None, start: Any = None, end: Any = None, step: Any = None, *,
            monitor: Any = None) -> list[MetricSeries]:
    """A range query (the monitor's query API): one series per label set."""
    from ..monitor.query import Monitor

    if not query:
        raise FieldError("give a PromQL query, e.g. query=up", field="query")

    def number(name: str, value: Any) -> float | None:
        if value in (None, ""):
            return None
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise FieldError(f"{name}={value!r} is not a number (seconds since the epoch, "
                             "or seconds for step)", field=name) from None
        if not math.isfinite(out) or out < 0:
            raise FieldError(f"{name}={value!r} must be a finite number ≥ 0", field=name)
        return out

    t_end = number("end", end) or time.time()
    t_start = number("start", start)
    t_step = number("step", step)
    if t_start is None:
        t_start = t_end - 900
    if t_start >= t_end:
        raise FieldError(f"start ({t_start:g}) must be before end ({t_end:g})", field="start")
    if t_step is not None and t_step <= 0:
        raise FieldError("step must be > 0 seconds", field="step")
    if t_step is not None and (t_end - t_start) / t_step > 11000:
        raise FieldError("more than 11000 points: raise step", field="step")
    mon = monitor or Monitor()
    try:
        frame = mon.query(query, window=t_end - t_start, step=t_step, end=t_end)
    except UsageError as exc:
        raise FieldError(str(exc), field="query") from None
    series: list[MetricSeries] = []
    if frame.empty:
        return series
    label_cols = [c for c in frame.columns if c not in ("time", "series", "value")]
    for key, part in frame.groupby("series", sort=True):
        first = part.iloc[0]
        labels = {c: str(first[c]) for c in label_cols if first[c] is not None
                  and first[c] == first[c]}
        times = part["time"].astype("int64").to_numpy() / 1e9
        series.append(MetricSeries(name=str(key).split("{", 1)[0], labels=labels,
                                   points=[(float(t), float(v)) for t, v in
                                           zip(times, part["value"].to_numpy(), strict=True)]))
    return series


def summary(store: StateStore, firing: int) -> Summary:
    refresh(store)
    active = store.list(active=True)
    count = {k: sum(r.kind is k for r in active) for k in Kind}
    jobs = [r for r in active if r.kind is Kind.job]
    return Summary(clusters=count[Kind.cluster], endpoints=count[Kind.endpoint],
                   runs=count[Kind.run],
                   jobs_running=sum(r.status is not Status.pending for r in jobs),
                   jobs_queued=sum(r.status is Status.pending for r in jobs),
                   alerts_firing=firing)
