"""Clusters for the sidebar: every one in the state store, and the keeper for new ones.

A cluster started here runs in the cluster keeper (:mod:`hybridnb.sites.keeper`), a
detached process of its own, exactly as ``hybridnb cluster up`` starts it: never in the
Jupyter server's process, so it neither dies with the server nor shares its environment.
Scaling and adapting write the desired size to the cluster's record; the keeper applies
it (:func:`hybridnb.sites.keeper.reconcile`).

Lists never wait long: worker counts come from the record (the keeper keeps them
current); for a cluster a kernel started, they are asked of its dashboard
(``/json/identity.json``) with a short timeout, all clusters at once, and remembered for
a few seconds.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

from .. import team
from ..errors import FieldError, OperationError, UsageError
from ..state import Kind, Record, StateStore, Status, state_home
from .cache import Remembered, refresh
from .models import Cluster, ClusterCreate, ClusterPatch

if TYPE_CHECKING:
    from ..config import HybridConfig

#: Clusters whose keeper process runs them (they answer scale/adapt/stop from here).
KEPT = ("sidebar", "cli")
ASK_TIMEOUT = 0.5


def dashboard_path(rec: Record, base_url: str) -> str | None:
    """Where the sidebar opens the cluster's dashboard: through the server's proxy."""
    if not rec.spec.get("dashboard"):
        return None
    return f"{base_url.rstrip('/')}/hybridnb/dashboard/{rec.id}/status"


def _stats_from_dashboard(link: str) -> dict[str, int] | None:
    from ..monitor.scrape import http_get
    from ..monitor.targets import metrics_url

    try:
        body = http_get(metrics_url(link, "/json/identity.json"), ASK_TIMEOUT)
        workers = (json.loads(body).get("workers") or {}).values()
    except Exception:  # unreachable or busy: the list shows no numbers, and never waits
        return None
    return {"workers": len(workers), "threads": sum(int(w.get("nthreads") or 0) for w in workers),
            "memory_bytes": sum(int(w.get("memory_limit") or 0) for w in workers)}


_dashboards = Remembered(_stats_from_dashboard)


def _stats(records: list[Record]) -> dict[str, dict[str, int] | None]:
    """Worker stats by record id: the record's own (the keeper's), else the dashboard's."""
    out: dict[str, dict[str, int] | None] = {}
    ask: dict[str, str] = {}
    for rec in records:
        if rec.spec.get("workers") is not None:
            out[rec.id] = {k: int(rec.spec.get(k) or 0)
                           for k in ("workers", "threads", "memory_bytes")}
        elif rec.status is Status.running and rec.spec.get("dashboard"):
            ask[rec.id] = str(rec.spec["dashboard"])
    answers = _dashboards.get_many(set(ask.values()))
    out.update({rid: answers[link] for rid, link in ask.items()})
    return out


def to_model(rec: Record, base_url: str, stats: dict[str, int] | None = None) -> Cluster:
    started_from = str(rec.spec.get("started_from") or "python")
    stats = stats or {}
    return Cluster(
        id=rec.id, name=rec.name, site=rec.site, backend=rec.backend, status=rec.status,
        started_from=started_from, controllable=started_from in KEPT and rec.status.active,
        host=rec.host, owner=rec.owner, workers=stats.get("workers"),
        threads=stats.get("threads"), memory_bytes=stats.get("memory_bytes"),
        scheduler_address=rec.address, dashboard=dashboard_path(rec, base_url),
        desired=rec.spec.get("desired"), applied=rec.spec.get("applied"), error=rec.error,
        created_at=rec.created_at)


def list_clusters(store: StateStore, base_url: str = "/", *,
                  include_ended: bool = False) -> list[Cluster]:
    """Every cluster of the state store (active ones unless ``include_ended``)."""
    refresh(store)
    records = store.list(Kind.cluster, active=None if include_ended else True)
    stats = _stats(records)
    return [to_model(r, base_url, stats.get(r.id)) for r in records]


def find(store: StateStore, cluster_id: str) -> Record:
    try:
        rec = store.get(cluster_id)
    except KeyError:
        rec = None
    if rec is None or rec.kind is not Kind.cluster:
        raise FieldError(f"no cluster {cluster_id!r}", field="id", reason="not_found")
    return rec


def start(request: ClusterCreate, store: StateStore, config: HybridConfig,
          base_url: str = "/", timeout: float = 120.0) -> Cluster:
    """Start a cluster in a keeper process and return it once it runs.

    Bad input fails before anything starts; a keeper that dies or does not come up in
    ``timeout`` seconds is stopped, and the error carries the end of its log.
    """
    from ..sites.keeper import launch_keeper

    try:
        config.site(request.site)
    except UsageError as exc:
        raise FieldError(str(exc), field="site") from None
    name = request.name or f"{request.site}-{uuid.uuid4().hex[:6]}"
    if any(r.name == name for r in store.list(Kind.cluster, active=True)):
        raise FieldError(f"a running cluster is already called {name!r}; pick another name",
                         field="name", reason="conflict")
    lease = team.admit("cluster", request.site, team.cluster_size(  # beyond quota: 409 now;
        request.workers, request.threads, request.adapt and request.adapt.model_dump()),
        name=name, config=config)  # the keeper's own admit takes this lease over (same name)
    logs = state_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    cmd = [sys.executable, "-m", "hybridnb.sites.keeper", "--site", request.site, "--name",
           name, "--started-from", "sidebar"]
    for flag, value in (("--workers", request.workers), ("--threads", request.threads),
                        ("--memory", request.memory)):
        if value is not None:
            cmd += [flag, str(value)]
    if request.adapt is not None:
        cmd += ["--adapt", request.adapt.model_dump_json()]
    try:
        rec = launch_keeper(cmd, name=name, log_path=log_path, timeout=timeout, store=store)
    except OperationError:
        lease.release("failed")
        raise
    return to_model(rec, base_url)


def _kept(rec: Record, what: str) -> None:
    if not rec.status.active:
        raise FieldError(f"cluster {rec.name!r} is {rec.status.value}", field="id",
                         reason="conflict")
    if rec.spec.get("started_from") not in KEPT:
        raise FieldError(f"cluster {rec.name!r} was started by a kernel or script, which "
                         f"owns it: {what} it there (its handle's methods)", field="id",
                         reason="conflict")


def scale(rec: Record, patch: ClusterPatch, store: StateStore, base_url: str = "/") -> Cluster:
    """Record a new desired size; the cluster's keeper applies it within a second."""
    _kept(rec, "scale")
    generation = int((rec.spec.get("desired") or {}).get("generation") or 0) + 1
    desired: dict[str, Any] = {"generation": generation}
    if patch.adapt is not None:
        desired["adapt"] = patch.adapt.model_dump()
    else:
        desired["workers"] = patch.workers
    updated = store.merge_spec(rec.id, {"desired": desired},
                               message=f"desired: {json.dumps(desired)}")
    return to_model(updated, base_url)


def stop(rec: Record, store: StateStore, base_url: str = "/", grace: float = 20.0) -> Cluster:
    """Stop a kept cluster: its keeper closes it cleanly on SIGTERM."""
    from ..cleanup import terminate

    _kept(rec, "close")
    store.update(rec.id, status=Status.stopping, message="stop asked from the sidebar")
    terminate(rec, grace=grace)
    if store.get(rec.id).status.active:
        store.update(rec.id, status=Status.stopped, message="stopped from the sidebar")
    return to_model(store.get(rec.id), base_url)
