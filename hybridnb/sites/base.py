"""The contract of a site backend.

A backend turns a configured :class:`~hybridnb.config.Site` into a running Dask cluster
on real engines (``LocalCluster``, ``SSHCluster``, dask-kubernetes' ``KubeCluster``, an
existing scheduler). A new backend is one small module:

**It must provide** :meth:`Backend.start`, returning :class:`Started` — the distributed
``Cluster`` object it created (or ``None`` when it only connects), the scheduler address,
the ``Security`` in use and any local process ids worth recording.

**It may provide**

- :meth:`Backend.scheduler_spec` and :meth:`Backend.worker_specs` — ``SpecCluster``
  specs, so the site can host a hybrid cluster's scheduler or lend it workers;
- :meth:`Backend.stop_record` — how ``hybridnb gc`` stops a leftover it started.

**Security it must keep**: TLS whenever ``site.tls`` (:meth:`Backend.security` gives
the certificates), and no listener beyond the site's own host — the scheduler's
dashboard in particular (``dashboard_host`` says where it listens when that is not the
scheduler's host).

**It gets for free** (from :class:`~hybridnb.sites.handle.ClusterHandle`): the client,
recording in the state store, ``scale``/``adapt`` (delegated to the cluster object),
residency pinning, TLS refusal of plain clients, ``repr``/``_repr_html_`` (from stored
fields, never a call to the scheduler), sync and async context managers, the
``ResourceWarning`` for a handle never closed and its closing at interpreter exit.

Register it in the ``hybridnb.site_backends`` entry-point group (or with
:func:`hybridnb.sites.register_backend`), and sites may say ``backend: NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UsageError
from ..resource_tags import worker_resources
from . import security as tls

if TYPE_CHECKING:
    from distributed.security import Security

    from ..config import HybridConfig, Site
    from ..state import Record, StateStore


@dataclass
class Started:
    """What a backend started or connected to."""

    address: str
    cluster: Any = None  # a distributed Cluster, or None when only connecting
    security: Security | None = None
    pids: list[int] = field(default_factory=list)
    remote_id: str | None = None
    owns: bool = True  # closing the handle stops the cluster
    tls_dir: Path | None = None  # temporary certificates to delete with the cluster
    dashboard_host: str | None = None  # where the dashboard listens, if not the scheduler's host
    close_timeout: float = 60.0  # seconds to stop the cluster it started
    #: Called with the end status ("stopped", "failed") once the handle closed it.
    on_close: list[Callable[[str], None]] = field(default_factory=list)


class Backend:
    """A way to run Dask on one site; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    #: Where the scheduler's dashboard listens when that is not the scheduler's host.
    dashboard_host: ClassVar[str | None] = None

    def __init__(self, site: Site, config: HybridConfig):
        self.site = site
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}(site={self.site.name!r})"

    @property
    def options(self) -> Any:
        """This site's options block for the backend."""
        return self.site.backend_options()

    def resources(self) -> dict[str, float]:
        """The Dask resources each worker of this site carries (site and data tags)."""
        return worker_resources(self.site)

    def security(self, directory: str | Path | None = None) -> Security | None:
        """TLS for a cluster this backend starts: temporary certificates (written to
        ``directory``, so other processes can connect) when the site requires TLS."""
        return tls.temporary(directory) if self.site.tls else None

    def start(self, *, name: str, n_workers: int | None, threads_per_worker: int | None,
              memory_limit: str | float | None, security: Security | None) -> Started:
        """Start (or connect to) a cluster on this site, using ``security`` (from
        :meth:`security`) for TLS."""
        raise NotImplementedError

    def scheduler_spec(self, security: Security | None) -> dict[str, Any]:
        """A ``SpecCluster`` scheduler spec on this site, for hybrid clusters."""
        raise UsageError(f"site '{self.site.name}' (backend {self.name}) cannot host a hybrid "
                         "cluster's scheduler; choose a local or ssh site with "
                         "policies.scheduler_site")

    def worker_specs(self, n_workers: int | None, threads_per_worker: int | None,
                     memory_limit: str | float | None, security: Security | None
                     ) -> dict[str, dict[str, Any]]:
        """``SpecCluster`` worker specs on this site, for hybrid clusters."""
        raise UsageError(f"site '{self.site.name}' (backend {self.name}) cannot lend workers "
                         "to a hybrid cluster yet; use local or ssh sites, or start workers "
                         "there with 'hybridnb worker SCHEDULER --site NAME'")

    @classmethod
    def stop_record(cls, record: Record, store: StateStore) -> None:
        """Stop a leftover this backend started (``hybridnb gc``); default: its processes."""
        from ..cleanup import terminate

        terminate(record)
