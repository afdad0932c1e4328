"""What to scrape: targets found in the state store, and a Dask cluster's workers.

Endpoints are scraped at their address's ``/metrics`` — a deployment's router there, and
each replica its record lists (labels ``role``, ``replica``, ``track``, so a router is
never counted as a replica and plots name ``router``, ``replica-0``, ``canary``); a
cluster at its scheduler's dashboard ``/metrics`` and at each worker's (the scheduler
lists the workers' HTTP ports in ``/json/identity.json``); a training run at the HTTP
exposition its record names (``address``), or through its run directory's
``metrics.jsonl`` — which holds its whole history, so the embedded collector prefers it
(``files=True``) and also reads runs that ended before it started (``since``).

>>> metrics_url("http://127.0.0.1:8787/status")
'http://127.0.0.1:8787/metrics'
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..state import Kind, Record, StateStore

logger = logging.getLogger(__name__)

Labels = dict[str, str]

JOBS = {Kind.endpoint: "hybridnb-endpoint", Kind.cluster: "hybridnb-dask",
        Kind.run: "hybridnb-train"}
#: The job of a Dask cluster's workers (the scheduler's is ``hybridnb-dask``).
WORKER_JOB = "hybridnb-dask-worker"


@dataclass(frozen=True)
class Target:
    """Something to scrape: an HTTP ``/metrics`` URL, or a training run directory.

    ``instance`` is ``host:port`` (or the run name); ``labels`` are added to its samples.
    ``ended`` marks a finished run: its lines are read once, and it has no ``up``.
    """

    job: str
    instance: str
    url: str | None = None
    run_dir: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    ended: bool = False

    @property
    def all_labels(self) -> Labels:
        return {"job": self.job, "instance": self.instance, **dict(self.labels)}

    @property
    def key(self) -> str:
        """What identifies the target across rounds: its URL or run directory."""
        return self.url or self.run_dir or self.instance


def metrics_url(address: str, path: str = "/metrics") -> str:
    """``http://host:port`` (or a dashboard link ending in ``/status``) → its metrics URL.

    >>> metrics_url("127.0.0.1:8000", "/json/identity.json")
    'http://127.0.0.1:8000/json/identity.json'
    """
    parts = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
    prefix = parts.path.rsplit("/status", 1)[0].rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{prefix}{path}"


def _http_target(job: str, url: str, labels: tuple[tuple[str, str], ...]) -> Target:
    return Target(job, urllib.parse.urlsplit(url).netloc, url=url, labels=labels)


def dask_workers(dashboard: str, name: str, timeout: float = 1.0) -> list[Target]:
    """The ``/metrics`` targets of a Dask cluster's workers, asked of its scheduler.

    One GET of the scheduler's ``/json/identity.json`` (served by the same dashboard
    that serves its ``/metrics``); each worker's HTTP server port is its ``dashboard``
    service. Workers without one are skipped. Labels: ``name`` (the cluster's) only, so
    series stay bounded by the number of workers (``instance``).
    """
    from .scrape import http_get

    body = http_get(metrics_url(dashboard, "/json/identity.json"), timeout)
    workers = json.loads(body).get("workers") or {}
    out = []
    for info in workers.values():
        port = (info.get("services") or {}).get("dashboard")
        host = info.get("host")
        if not port or not host:
            continue
        host = f"[{host}]" if ":" in host else host  # IPv6
        scheme = urllib.parse.urlsplit(metrics_url(dashboard)).scheme
        out.append(_http_target(WORKER_JOB, f"{scheme}://{host}:{port}/metrics",
                                (("name", name),)))
    return sorted(out, key=lambda t: t.instance)


def endpoint_targets(name: str, router: str | None,
                     replicas: list[dict[str, Any]]) -> list[Target]:
    """The router and replicas of one deployment, labelled by role, slot and track.

    ``replicas`` are ``{"url", "index", "track"}`` mappings (the deployment's record, or
    ``Endpoint.status()["replicas"]``).

    >>> [t.all_labels["replica"] for t in endpoint_targets(
    ...     "m", None, [{"url": "http://127.0.0.1:9", "index": 0, "track": "stable"}])]
    ['replica-0']
    """
    job = JOBS[Kind.endpoint]
    out = []
    if router:
        out.append(_http_target(job, metrics_url(router), (("name", name),
                                                           ("role", "router"))))
    for rep in replicas:
        if not rep.get("url"):
            continue
        labels = (("name", name), ("replica", f"replica-{rep.get('index', 0)}"),
                  ("role", "replica"), ("track", str(rep.get("track") or "stable")))
        out.append(_http_target(job, metrics_url(str(rep["url"])), labels))
    return out


def _record_targets(rec: Record, workers: bool, timeout: float, files: bool) -> list[Target]:
    labels = (("name", rec.name),)
    if rec.kind is Kind.endpoint and rec.address:
        if rec.spec.get("router"):  # a deployment: a router in front of replicas
            return endpoint_targets(rec.name, rec.address,
                                    list(rec.spec.get("replica_endpoints") or []))
        return [_http_target(JOBS[Kind.endpoint], metrics_url(rec.address), labels)]
    if rec.kind is Kind.cluster and rec.spec.get("dashboard"):
        dashboard = str(rec.spec["dashboard"])
        out = [_http_target(JOBS[Kind.cluster], metrics_url(dashboard), labels)]
        if workers:
            try:
                out += dask_workers(dashboard, rec.name, timeout)
            except Exception as exc:  # the scheduler's own target reports it down
                logger.debug("no workers of cluster %r: %s", rec.name, exc)
        return out
    if rec.kind is Kind.run:
        run_dir = rec.spec.get("run_dir")
        if run_dir and (files or not rec.address) and (not files or _readable(run_dir)):
            return [Target(JOBS[Kind.run], rec.name, run_dir=str(run_dir),
                           labels=(("run", rec.name),), ended=not rec.status.active)]
        if rec.address and rec.status.active:
            # The run's own HTTP exposition (what a real Prometheus scrapes) carries
            # ``run``; a target label of that name would clash with it there.
            return [_http_target(JOBS[Kind.run], metrics_url(rec.address), labels)]
    return []


def _readable(run_dir: str) -> bool:
    from pathlib import Path

    return Path(run_dir).is_dir()


def discover(store: StateStore | None = None, *, workers: bool = True,
             timeout: float = 1.0, files: bool = False, since: float | None = None,
             records: list[Record] | None = None) -> list[Target]:
    """Targets for everything active in the state store.

    ``workers=True`` also asks each cluster's scheduler for its workers (one short
    HTTP request per cluster, ``timeout`` seconds at most). ``files=True`` reads a
    training run through its run directory where this host sees it (its whole history,
    not only its latest values), and ``since`` (Unix time) adds the runs that ended
    after it, read once: a collector started after a run still shows the run.
    ``records`` are the active records, when the caller has just listed them.
    """
    store = store or StateStore()
    found = records if records is not None else store.list(active=True)
    if since is not None:
        found = [*found, *(r for r in store.list(Kind.run, active=False)
                           if (r.ended_at or 0) >= since)]
    out: list[Target] = []
    for rec in found:
        out += _record_targets(rec, workers, timeout, files)
    return out
