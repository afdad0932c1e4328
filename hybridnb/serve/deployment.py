"""Local deployments: replica processes behind a router, health-checked and autoscaled.

:func:`deploy` starts ``replicas`` endpoint servers (each a subprocess from
:func:`~hybridnb.serve.process.start_server`) and a router in front of them.

Why the router runs in a thread of the calling process, not a subprocess of its own:
scaling, canaries, status and the autoscaler act on the router's replica list directly,
with no control protocol between processes; and the router lives exactly as long as the
notebook kernel or ``hybridnb deploy`` process that owns it. The replicas, which do the
work and hold the memory, are separate processes. The state store records the
deployment with the replicas' pids (never the owner's), so ``hybridnb gc`` stops the
replicas of a kernel that died without closing its endpoint.

The deployment reconciles: the wanted replica count per track (``stable``/``canary``)
is state; :meth:`Deployment.reconcile` starts or retires replicas until the pool
matches; the health loop replaces dead replicas; the autoscaler changes the wanted count.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import OperationError, UsageError
from ..state import Kind, StateStore, Status
from .auth import resolve_token
from .autoscale import AutoscalePolicy, Autoscaler
from .process import start_server
from .router import POLICIES, Replica, ReplicaPool, RouterMetrics
from .settings import ServeSettings

logger = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 0.5
#: Failed readiness checks in a row before a live replica is replaced.
HEALTH_FAILURES = 3


class Deployment:
    """Replicas of one bundle (plus an optional canary) and the router in front of them."""

    def __init__(self, bundle: str | os.PathLike[str], *, replicas: int = 2,
                 settings: ServeSettings | None = None,
                 autoscale: AutoscalePolicy | dict[str, Any] | None = None,
                 routing: str = "round_robin", token: str | None = None,
                 store: StateStore | None = None, name: str | None = None,
                 record: bool = True, port: int = 0):
        if routing not in POLICIES:
            raise UsageError(f"unknown routing policy {routing!r}; choose one of "
                             f"{', '.join(POLICIES)}")
        self.autoscale = AutoscalePolicy.coerce(autoscale)
        if replicas < 1:
            raise UsageError(f"replicas must be at least 1, got {replicas}")
        if self.autoscale is not None:
            replicas = min(self.autoscale.max, max(self.autoscale.min, replicas))
        self.bundles: dict[str, str | None] = {"stable": str(Path(bundle).resolve()),
                                               "canary": None}
        self.wanted = {"stable": replicas, "canary": 0}
        self.settings = settings or ServeSettings()
        self.routing = routing
        # Resolved once, here: the router and every replica check the same token (the
        # replicas would otherwise read $HYBRIDNB_ENDPOINT_TOKEN and the router not).
        self.token = resolve_token(token or self.settings.token, "127.0.0.1")
        self.port = port
        self.name = name or Path(bundle).name
        self.pool = ReplicaPool()
        self.metrics = RouterMetrics()
        self.store = (store or StateStore()) if record else None
        self.record_id: str | None = None
        self.router: Any = None
        self._control = threading.RLock()
        self._closed = False
        self.events: list[tuple[float, str]] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Deployment:
        """Start the replicas (in parallel) and the router; record the deployment."""
        from .router_app import create_router_app
        from .server import ServerThread

        n = self.wanted["stable"]
        app = create_router_app(self.pool, self.routing, settings=self.settings,
                                token=self.token, metrics=self.metrics,
                                background=self._background)
        try:  # the router's port first: a port in use fails before any replica starts
            router = ServerThread(app, port=self.port,
                                  drain_timeout_s=self.settings.drain_timeout_s)
        except OSError as exc:
            raise OperationError(f"the router cannot listen on 127.0.0.1:{self.port}: "
                                 f"{exc.strerror or exc}; choose another port (0 picks a "
                                 "free one)") from None
        try:
            self._spawn_many("stable", n)
            self.router = router.start()
        except BaseException:
            router.sock.close()
            self.close()
            raise
        if self.store is not None:
            rec = self.store.add(Kind.endpoint, self.name, site="local", backend="local",
                                 pids=self.pids(), address=self.router.url,
                                 spec=self.spec(), status=Status.running)
            self.record_id = rec.id
        self._note(f"started {n} replica(s) behind a {self.routing} router at "
                   f"{self.router.url}")
        return self

    def close(self) -> None:
        """Stop the router, then drain and stop every replica; mark the record stopped."""
        self._closed = True  # first: a health check's replacement waiting on the lock gives up
        with self._control:
            self._closed = True
            if self.router is not None:
                self.router.stop()
            self._retire_many(list(self.pool.replicas))
        if self.store is not None and self.record_id is not None:
            self.store.update(self.record_id, status=Status.stopped, message="closed")
            self.record_id = None

    @property
    def url(self) -> str:
        return str(self.router.url) if self.router is not None else ""

    def pids(self) -> list[int]:
        return [r.process.pid for r in self.pool.replicas if r.process is not None]

    def spec(self) -> dict[str, Any]:
        return {"bundle": self.bundles["stable"], "canary": self.bundles["canary"],
                "routing": self.routing, "replicas": dict(self.wanted),
                "autoscale": self.autoscale.to_dict() if self.autoscale else None,
                "canary_percent": self.pool.canary_percent,
                "router": f"in-process thread of pid {os.getpid()}",
                # Where monitoring finds each replica (the router is the record's address).
                "replica_endpoints": [{"url": r.url, "index": r.index, "track": r.track}
                                      for r in self.pool.replicas],
                "settings": self.settings.to_dict(), "auth": bool(self.token)}

    # -- replicas -------------------------------------------------------------------------

    def _spawn(self, track: str, index: int) -> Replica:
        path = self.bundles[track]
        assert path is not None
        proc = start_server(path, settings=self.settings, token=self.token, record=False,
                            name=f"{self.name}-{track}-{index}")
        return self.pool.add(proc.url, track, proc, index=index, bundle=path)

    def _spawn_many(self, track: str, n: int) -> None:
        """Start ``n`` replicas of ``track`` in parallel, in the lowest free slots."""
        if n <= 0:
            return
        used = {r.index for r in self.pool.replicas}
        free = [i for i in range(len(used) + n) if i not in used][:n]
        with cf.ThreadPoolExecutor(n) as pool:
            for fut in [pool.submit(self._spawn, track, i) for i in free]:
                fut.result()

    def _retire(self, rep: Replica) -> None:
        self.pool.remove(rep)  # out of routing first, then drain what it still has
        if rep.process is not None:
            rep.process.stop(grace=10.0)

    def _retire_many(self, reps: list[Replica]) -> None:
        """Retire ``reps`` in parallel (each drains on its own)."""
        if reps:
            with cf.ThreadPoolExecutor(len(reps)) as pool:
                list(pool.map(self._retire, reps))

    def _note(self, message: str) -> None:
        logger.info("%s: %s", self.name, message)
        self.events.append((time.time(), message))
        del self.events[:-200]

    def _sync_record(self) -> None:
        if self.store is not None and self.record_id is not None:
            # Merged, not replaced: the record also holds what surfaces asked for.
            self.store.merge_spec(self.record_id, self.spec())
            self.store.update(self.record_id, pids=self.pids())

    def reconcile_desired(self) -> None:
        """Apply what a surface wrote to the record (the JupyterLab sidebar): ``desired``
        replicas and canary share, each new ``generation`` once; a record stopped from
        elsewhere stops this deployment's replicas."""
        if self.store is None or self.record_id is None or self._closed:
            return
        rec = self.store.get(self.record_id)
        if not rec.status.active:
            with self._control:
                self._closed = True
                for rep in list(self.pool.replicas):
                    self._retire(rep)
            self._note(f"stopped from elsewhere ({rec.status.value})")
            return
        desired = rec.spec.get("desired") or {}
        if desired.get("generation") in (None, (rec.spec.get("applied") or {}).get("generation")):
            return
        error = None
        try:
            if desired.get("replicas") is not None:
                self.scale(int(desired["replicas"]))
            if desired.get("canary_percent") is not None:
                if self.bundles["canary"] is None:
                    raise UsageError("there is no canary to send traffic to")
                self.pool.canary_percent = float(desired["canary_percent"])
                self._note(f"canary at {self.pool.canary_percent:g} % (asked from the record)")
        except Exception as exc:  # refused: say so in the record, keep serving
            error = str(exc)
        self.store.merge_spec(self.record_id, {"applied": {**desired, "error": error},
                                               "canary_percent": self.pool.canary_percent})

    def reconcile(self) -> None:
        """Start or retire replicas until each track has its wanted count of its bundle."""
        with self._control:
            if self._closed:
                return
            for track in ("stable", "canary"):
                bundle = self.bundles[track]
                wanted = self.wanted[track] if bundle else 0
                current = [r for r in self.pool.replicas
                           if r.track == track and r.bundle == bundle]
                self._spawn_many(track, wanted - len(current))  # new ones first
                # Then count again, new replicas included, and retire what is over:
                # replicas of an old bundle first, then unhealthy ones, then the newest.
                mine = [r for r in self.pool.replicas if r.track == track]
                mine.sort(key=lambda r: (r.bundle == bundle, r.healthy, -r.index))
                self._retire_many(mine[:max(0, len(mine) - wanted)])
            self._sync_record()

    def scale(self, n: int, track: str = "stable") -> None:
        """Run ``n`` replicas (within the autoscaler's bounds, if there is one)."""
        if n < (1 if track == "stable" else 0):
            raise UsageError(f"cannot scale {track} to {n} replicas")
        if self.autoscale is not None and track == "stable":
            n = min(self.autoscale.max, max(self.autoscale.min, n))
        with self._control:
            if n != self.wanted[track]:
                self._note(f"scaling {track} from {self.wanted[track]} to {n} replica(s)")
            self.wanted[track] = n
            self.reconcile()

    def replace(self, rep: Replica, why: str) -> None:
        """Retire ``rep`` and start a new replica in its slot."""
        with self._control:
            if self._closed or rep not in self.pool.replicas:
                return
            self._note(f"replacing replica {rep.index} ({why})")
            self._retire(rep)
            self.reconcile()

    # -- canaries -------------------------------------------------------------------------

    def canary(self, bundle: str | os.PathLike[str], percent: float, replicas: int = 1) -> None:
        """Run ``bundle`` beside the stable version and send it ``percent`` % of requests."""
        if not 0 <= percent <= 100:
            raise UsageError(f"percent must be within 0..100, got {percent}")
        with self._control:
            self.bundles["canary"] = str(Path(bundle).resolve())
            self.wanted["canary"] = replicas
            self.reconcile()
            self.pool.canary_percent = percent
            self._note(f"canary {Path(bundle).name} at {percent:g} %")

    def promote(self) -> None:
        """Make the canary the stable version; old stable replicas are retired."""
        with self._control:
            if self.bundles["canary"] is None:
                raise UsageError("there is no canary to promote")
            for rep in self.pool.replicas:
                if rep.track == "canary":
                    rep.track = "stable"
            self.bundles["stable"], self.bundles["canary"] = self.bundles["canary"], None
            self.wanted["canary"] = 0
            self.pool.canary_percent = 0
            self.reconcile()  # new-bundle replicas first, then old ones retire
            self._note("canary promoted to stable")

    def rollback(self) -> None:
        """Stop the canary; all traffic returns to the stable version."""
        with self._control:
            self.pool.canary_percent = 0
            self.bundles["canary"] = None
            self.wanted["canary"] = 0
            self.reconcile()
            self._note("canary rolled back")

    # -- background loops (on the router's event loop) ------------------------------------

    def _background(self) -> list[Any]:
        loops = [self._health_loop()]
        if self.autoscale is not None:
            loops.append(self._autoscale_loop(self.autoscale))
        return loops

    async def _health_loop(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                await asyncio.sleep(HEALTH_INTERVAL_S)
                for rep in list(self.pool.replicas):
                    why = await self._check(client, rep)
                    if why is not None and not self._closed:
                        await asyncio.to_thread(self.replace, rep, why)
                self.metrics.set_replicas(self.pool)
                await asyncio.to_thread(self.reconcile_desired)

    async def _check(self, client: Any, rep: Replica) -> str | None:
        import httpx

        if rep.process is not None and not rep.process.alive():
            rep.healthy = False
            return f"its process exited with code {rep.process.proc.returncode}"
        try:
            ok = (await client.get(rep.url + "/v2/health/ready")).status_code == 200
        except httpx.TransportError:
            ok = False
        rep.failures = 0 if ok else rep.failures + 1
        rep.healthy = ok
        if rep.failures >= HEALTH_FAILURES:
            return f"{rep.failures} failed readiness checks"
        return None

    async def _autoscale_loop(self, policy: AutoscalePolicy) -> None:
        scaler = Autoscaler(policy)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(policy.interval_s)
            stable = [r for r in self.pool.replicas if r.track == "stable"]
            in_flight = sum(r.in_flight for r in stable)
            want = scaler.desired(self.wanted["stable"], in_flight, loop.time())
            if want != self.wanted["stable"] and not self._closed:
                await asyncio.to_thread(self.scale, want)
