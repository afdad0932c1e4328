"""``scheduler`` backend: connect to a Dask scheduler someone already runs.

Its workers are started by whoever runs the site; for residency pinning they carry the
site's resources (``hybridnb worker SCHEDULER --site NAME`` starts one that way).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from . import security as tls
from .base import Backend, Started

if TYPE_CHECKING:
    from distributed.security import Security


class SchedulerBackend(Backend):
    """Connects; never starts or stops the scheduler."""

    name = "scheduler"

    def security(self, directory: str | Path | None = None) -> Security | None:
        opts = self.options
        address: str = opts.address
        if self.site.tls and not address.startswith("tls://"):
            raise UsageError(
                f"site '{self.site.name}' requires TLS but its scheduler address is {address}: "
                "a plain tcp:// scheduler beyond loopback runs code for anyone who reaches "
                f"it. Use a tls:// address in sites.{self.site.name}.scheduler.address with "
                "tls_ca_file, tls_cert and tls_key (or set "
                f"sites.{self.site.name}.tls: false on a trusted network; hybridnb warns)")
        if not address.startswith("tls://"):
            return None
        missing = [k for k in ("tls_ca_file", "tls_cert", "tls_key") if not getattr(opts, k)]
        if missing:
            raise UsageError(
                f"site '{self.site.name}' connects to {address} but lacks "
                f"{', '.join(missing)}; add them under sites.{self.site.name}.scheduler")
        return tls.from_files(opts.tls_ca_file, opts.tls_cert, opts.tls_key)

    def start(self, *, name: str, n_workers: int | None, threads_per_worker: int | None,
              memory_limit: str | float | None, security: Security | None) -> Started:
        if n_workers is not None or threads_per_worker is not None or memory_limit is not None:
            raise UsageError(f"site '{self.site.name}' connects to an existing scheduler: "
                             "n_workers, threads_per_worker and memory_limit are set where "
                             "its workers are started, not here")
        return Started(address=self.options.address, security=security, owns=False,
                       remote_id=self.options.address)

    @property
    def timeout(self) -> float:
        return float(self.options.timeout)
