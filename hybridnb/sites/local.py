"""``local`` backend: a ``distributed.LocalCluster`` on this machine (the embedded default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Backend, Started

if TYPE_CHECKING:
    from distributed.security import Security


#: The dashboard of a cluster on this machine listens on loopback only: it has no
#: authentication, the user's browser (or jupyter-server-proxy, which refuses other hosts
#: by default) reaches it there, and workers of other sites never need it.
DASHBOARD_ADDRESS = "127.0.0.1:0"


class LocalBackend(Backend):
    """Workers are processes (or threads, ``processes: false``) on this machine."""

    name = "local"
    dashboard_host = "127.0.0.1"

    @property
    def host(self) -> str:
        return getattr(self.options, "host", None) or "127.0.0.1"

    @property
    def processes(self) -> bool:
        return getattr(self.options, "processes", True)

    def start(self, *, name: str, n_workers: int | None, threads_per_worker: int | None,
              memory_limit: str | float | None, security: Security | None,
              processes: bool | None = None) -> Started:
        from distributed import LocalCluster

        sec = security
        procs = self.processes if processes is None else processes
        kwargs: dict[str, Any] = {}
        if memory_limit is not None:
            kwargs["memory_limit"] = memory_limit
        if procs or sec is not None:
            # Threads alone talk in-process (inproc://) unless TLS asks for a real socket.
            kwargs["host"] = self.host
        if sec is not None:
            kwargs["protocol"] = "tls://"
        cluster = LocalCluster(
            name=name, n_workers=n_workers, threads_per_worker=threads_per_worker,
            processes=procs, dashboard_address=DASHBOARD_ADDRESS, security=sec,
            resources=self.resources(), **kwargs)
        return Started(address=cluster.scheduler_address, cluster=cluster, security=sec,
                       pids=_worker_pids(cluster))

    def scheduler_spec(self, security: Security | None) -> dict[str, Any]:
        from distributed import Scheduler

        options: dict[str, Any] = {"host": self.host, "dashboard_address": DASHBOARD_ADDRESS}
        if security is not None:
            options.update(security=security, protocol="tls://")
        return {"cls": Scheduler, "options": options}

    def worker_specs(self, n_workers: int | None, threads_per_worker: int | None,
                     memory_limit: str | float | None, security: Security | None
                     ) -> dict[str, dict[str, Any]]:
        from distributed import Nanny

        options: dict[str, Any] = {"nthreads": threads_per_worker or 1, "host": self.host,
                                   "resources": self.resources(), "security": security}
        if memory_limit is not None:
            options["memory_limit"] = memory_limit
        return {f"{self.site.name}-{i}": {"cls": Nanny, "options": dict(options)}
                for i in range(1 if n_workers is None else n_workers)}


def _worker_pids(cluster: Any) -> list[int]:
    """Pids of the nanny processes (never this process: gc must not kill the kernel)."""
    import os

    pids = []
    for worker in getattr(cluster, "workers", {}).values():
        proc = getattr(worker, "process", None)
        pid = getattr(proc, "pid", None)
        if pid and pid != os.getpid():
            pids.append(pid)
    return pids
