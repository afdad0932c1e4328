"""The router in front of an endpoint's replicas: routing policies, retries, metrics.

An ASGI app (Starlette) that passes every Open Inference Protocol / KServe route through
unchanged to one replica, chosen by a policy from :data:`POLICIES`:

``round_robin``
    each healthy replica in turn;
``least_connections``
    the one with the fewest requests in flight (ties in turn);
``least_response_time``
    the lowest EWMA of recent latencies, weighted by its in-flight requests, so a slow
    replica gets less until it recovers;
``power_of_two``
    two at random, the one with fewer in flight (cheap, and no herd on one replica).

With a canary, a request first picks a track (``stable``/``canary``) by the canary's
percentage, then a replica of that track.

What the router does when a replica does not answer 200 (:mod:`~hybridnb.serve.router_app`):

- refused connection or connect timeout (nothing was sent), or a 503 (the replica's
  admission control or drain refused it unprocessed): sent once more, to another
  replica; a refused connection also marks the replica unhealthy (nothing listens
  there any more), the only verdict a single request gives;
- connection closed or reset with no answer (the replica died mid-request): sent
  once more elsewhere; inference has no side effects, so a second run is safe;
- no answer within the timeout: 504 for that request, and nothing else. A slow
  replica is not a dead one: the health loop judges it by its readiness probe, and
  re-sending a request that a busy replica may still run only adds load where there
  is too much;
- any other answer passes through, and so does the last 503 when no other replica
  is left to try.

The router has admission control of its own (:class:`~hybridnb.serve.admission.Admission`):
at most ``max_in_flight + max_queue`` requests per replica, refused beyond that at once
with 503 and ``Retry-After``, and bodies over ``max_body_bytes`` get 413 before any is
sent on; the limits are the replicas' :class:`~hybridnb.serve.settings.ServeSettings`.

>>> pool = ReplicaPool()
>>> a, b = pool.add("http://127.0.0.1:1"), pool.add("http://127.0.0.1:2")
>>> a.in_flight = 3
>>> POLICIES["least_connections"](pool.healthy("stable"), pool).url
'http://127.0.0.1:2'
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from .process import ServerProcess

logger = logging.getLogger(__name__)

TRACKS = ("stable", "canary")


@dataclass(eq=False)
class Replica:
    """One replica as the router sees it."""

    url: str
    index: int
    track: str = "stable"
    process: ServerProcess | None = field(default=None, repr=False)
    bundle: str = ""
    healthy: bool = True
    in_flight: int = 0
    ewma_s: float = 0.0
    failures: int = 0
    requests: int = 0

    def observe(self, seconds: float, alpha: float = 0.3) -> None:
        """Fold one latency into the moving average."""
        self.ewma_s = seconds if self.requests == 0 else (
            alpha * seconds + (1 - alpha) * self.ewma_s)
        self.requests += 1

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "url": self.url, "track": self.track,
                "healthy": self.healthy, "bundle": self.bundle, "in_flight": self.in_flight,
                "ewma_ms": round(self.ewma_s * 1000, 3), "requests": self.requests,
                "pid": self.process.pid if self.process is not None else None}


class ReplicaPool:
    """The replicas, replaced as a whole list on change (copy on write).

    The router's event loop reads :attr:`replicas` without a lock; changes from other
    threads (scale, canary, replacement) take :attr:`lock` and swap the list.
    """

    def __init__(self) -> None:
        self.replicas: list[Replica] = []
        self.lock = threading.Lock()
        self.canary_percent = 0.0
        self._turn = itertools.count()

    def free_index(self) -> int:
        """The lowest slot number not in use: metric labels stay bounded by the maximum."""
        used = {r.index for r in self.replicas}
        return next(i for i in itertools.count() if i not in used)

    def add(self, url: str, track: str = "stable", process: ServerProcess | None = None,
            index: int | None = None, bundle: str = "") -> Replica:
        with self.lock:
            rep = Replica(url, self.free_index() if index is None else index, track, process,
                          bundle)
            self.replicas = [*self.replicas, rep]
        return rep

    def remove(self, rep: Replica) -> None:
        with self.lock:
            self.replicas = [r for r in self.replicas if r is not rep]

    def healthy(self, track: str | None = None) -> list[Replica]:
        return [r for r in self.replicas if r.healthy and (track is None or r.track == track)]

    def next_turn(self) -> int:
        return next(self._turn)

    def choose_track(self) -> str:
        """``canary`` for about ``canary_percent`` % of requests, when it has replicas."""
        if self.canary_percent > 0 and random.random() * 100 < self.canary_percent \
                and self.healthy("canary"):
            return "canary"
        return "stable" if self.healthy("stable") else "canary"


Policy = Callable[[list[Replica], ReplicaPool], Replica]


def round_robin(reps: list[Replica], pool: ReplicaPool) -> Replica:
    return reps[pool.next_turn() % len(reps)]


def least_connections(reps: list[Replica], pool: ReplicaPool) -> Replica:
    low = min(r.in_flight for r in reps)
    ties = [r for r in reps if r.in_flight == low]
    return ties[pool.next_turn() % len(ties)]


def _expected_wait(r: Replica) -> float:
    if r.requests:
        return r.ewma_s * (r.in_flight + 1)
    # Not yet measured: tried once at once (no replica starves unmeasured), then left
    # alone until that first answer comes; a replica that hangs must not draw everything.
    return 0.0 if r.in_flight == 0 else float("inf")


def least_response_time(reps: list[Replica], pool: ReplicaPool) -> Replica:
    return min(reps, key=lambda r: (_expected_wait(r), r.in_flight, random.random()))


def power_of_two(reps: list[Replica], pool: ReplicaPool) -> Replica:
    if len(reps) == 1:
        return reps[0]
    a, b = random.sample(reps, 2)
    return a if a.in_flight <= b.in_flight else b


#: Routing policies by name; add one here to make it available to ``deploy(routing=)``.
POLICIES: dict[str, Policy] = {"round_robin": round_robin,
                               "least_connections": least_connections,
                               "least_response_time": least_response_time,
                               "power_of_two": power_of_two}


def policy(name: str) -> Policy:
    """The policy called ``name``; :class:`UsageError` naming the choices otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        raise UsageError(f"unknown routing policy {name!r}; choose one of "
                         f"{', '.join(POLICIES)}") from None


class RouterMetrics:
    """``hybridnb_router_*``: requests by code, replica slot and track; latency; replicas."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        from .metrics import LATENCY_BUCKETS

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hybridnb_router_requests", "Requests answered by the router, by status code, "
            "replica slot and track (stable/canary).", ["code", "replica", "version"],
            registry=self.registry)
        self.duration = Histogram(
            "hybridnb_router_request_duration_seconds", "Time from request to response "
            "at the router, by track.", ["version"], buckets=LATENCY_BUCKETS,
            registry=self.registry)
        self.retries = Counter("hybridnb_router_retries", "Requests sent again to another "
                               "replica after a connection error or a replica's 503.",
                               registry=self.registry)
        self.rejected = Counter("hybridnb_router_rejected", "Requests refused at the "
                                "router (503) because it held all its replicas can take.",
                                registry=self.registry)
        self.replicas = Gauge("hybridnb_router_replicas", "Replicas, by health and track.",
                              ["state", "version"], registry=self.registry)
        self.in_flight = Gauge("hybridnb_router_in_flight", "Requests admitted at the router "
                               "and not yet answered.", registry=self.registry)

    def set_replicas(self, pool: ReplicaPool) -> None:
        for track in TRACKS:
            reps = [r for r in pool.replicas if r.track == track]
            healthy = sum(r.healthy for r in reps)
            self.replicas.labels(state="healthy", version=track).set(healthy)
            self.replicas.labels(state="unhealthy", version=track).set(len(reps) - healthy)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def now() -> float:
    return time.perf_counter()
