"""``ssh`` backend: Dask over SSH with ``distributed``'s SSH process classes.

The first host runs the scheduler, the others run workers (as ``SSHCluster`` does); a
single host runs both. Each process listens on its own host's address, which matters
where a host cannot guess its address (no default route).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

from distributed.deploy import ssh as dask_ssh

from ..errors import OperationError
from .base import Backend, Started

if TYPE_CHECKING:
    from distributed.security import Security


class _Deadline:
    """Bound the start of one of distributed's SSH processes.

    distributed reads the remote process's stderr until it prints its address, with no
    deadline: a remote ``python`` that hangs (a wrong interpreter, a stuck import, a full
    disk) would hang the notebook. After ``start_timeout`` seconds this fails with what
    was being started where; the cluster's failed start then closes the connection.
    """

    address: str
    remote_python: Any
    what = "process"  # named in the error

    def __init__(self, *args: Any, start_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_timeout = start_timeout

    async def start(self) -> None:
        try:
            await asyncio.wait_for(super().start(), self.start_timeout)  # type: ignore[misc]
        except asyncio.TimeoutError:
            raise OperationError(
                f"the {self.what} on {self.address} did not report its address within "
                f"{self.start_timeout:g} s; check that {self.remote_python or 'python'} "
                f"runs there with distributed installed (or raise ssh.start_timeout)"
            ) from None


class TimedScheduler(_Deadline, dask_ssh.Scheduler):
    """distributed's SSH ``Scheduler`` with a start deadline."""

    what = "scheduler"


class TimedWorker(_Deadline, dask_ssh.Worker):
    """distributed's SSH ``Worker`` with a start deadline."""

    what = "worker"


class SSHBackend(Backend):
    """Scheduler and workers started over SSH on the site's hosts."""

    name = "ssh"

    def connect_options(self) -> dict[str, Any]:
        """asyncssh options for this site's hosts."""
        o = self.options
        out: dict[str, Any] = {"port": o.port, "connect_timeout": o.connect_timeout,
                               "login_timeout": o.connect_timeout}
        if o.user:
            out["username"] = o.user
        if o.key:
            out["client_keys"] = [o.key]
        if o.known_hosts == "ignore":
            out["known_hosts"] = None
        elif o.known_hosts:
            out["known_hosts"] = o.known_hosts
        return out

    @property
    def remote_python(self) -> str:
        return self.options.python or sys.executable

    @property
    def worker_hosts(self) -> list[str]:
        hosts = list(self.options.hosts)
        return hosts[1:] or hosts

    def scheduler_spec(self, security: Security | None) -> dict[str, Any]:
        host = self.options.hosts[0]
        # The dashboard on the scheduler's own address, never all interfaces (":0").
        # distributed splits "host:port" on ":", so an IPv6 host goes as [[host, port]].
        dashboard: Any = [[host, 0]] if ":" in host else f"{host}:0"
        kwargs: dict[str, Any] = {"host": host, "dashboard_address": dashboard}
        if self.options.scheduler_port:
            kwargs["port"] = self.options.scheduler_port
        if security is not None:
            kwargs["protocol"] = "tls://"
        return {"cls": TimedScheduler, "options": {
            "address": host, "connect_options": self.connect_options(), "kwargs": kwargs,
            "remote_python": self.remote_python,
            "start_timeout": self.options.start_timeout}}

    def worker_specs(self, n_workers: int | None, threads_per_worker: int | None,
                     memory_limit: str | float | None, security: Security | None
                     ) -> dict[str, dict[str, Any]]:
        hosts = self.worker_hosts
        n = len(hosts) if n_workers is None else n_workers
        specs = {}
        for i in range(n):
            host = hosts[i % len(hosts)]  # round-robin over the worker hosts
            kwargs: dict[str, Any] = {"host": host, "nthreads": threads_per_worker or 1,
                                      "resources": self.resources()}
            if memory_limit is not None:
                kwargs["memory_limit"] = memory_limit
            specs[f"{self.site.name}-{i}"] = {"cls": TimedWorker, "options": {
                "address": host, "connect_options": self.connect_options(),
                "kwargs": kwargs, "worker_class": "distributed.Nanny",
                "remote_python": self.remote_python,
                "start_timeout": self.options.start_timeout}}
        return specs

    def start(self, *, name: str, n_workers: int | None, threads_per_worker: int | None,
              memory_limit: str | float | None, security: Security | None) -> Started:
        from .spec import start_spec_cluster

        cluster = start_spec_cluster(
            name, self.scheduler_spec(security),
            self.worker_specs(n_workers, threads_per_worker, memory_limit, security), security)
        return Started(address=cluster.scheduler_address, cluster=cluster, security=security)
