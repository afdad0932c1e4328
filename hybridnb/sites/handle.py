"""The cluster handle users hold: a Dask client on a site's cluster, recorded and pinned.

A :class:`ClusterHandle` wraps a real distributed cluster object (``LocalCluster``,
``SpecCluster``, ``KubeCluster``) or a connection to an existing scheduler. The hot path
is untouched: ``handle.client`` *is* a ``distributed.Client``.

Its lifecycle never waits on a dead event loop: every call hybridnb makes to the
scheduler has a deadline, ``repr``/``_repr_html_``/``__del__`` read stored fields only,
and a handle still open at interpreter exit is closed by :mod:`hybridnb.lifecycle`
while distributed's loop still runs (a script or kernel that ends with an open handle
exits at once, instead of hanging in ``__del__``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..config.units import format_bytes
from ..errors import OperationError, UsageError
from ..resource_tags import requirements, site_of, site_resource
from ..state import Kind, Status
from . import security as tls

if TYPE_CHECKING:
    from distributed import Client

    from ..config import HybridConfig
    from ..state import Record, StateStore
    from .base import Started

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerInfo:
    """One worker, as the scheduler sees it."""

    address: str
    site: str | None
    nthreads: int
    memory_limit: int
    resources: dict[str, float]


class ClusterHandle:
    """A Dask cluster on one site, or spanning several, started by hybridnb.

    Use it as a context manager (``with`` or ``async with``) or call :meth:`close`; a
    handle never closed warns with ``ResourceWarning``.

    Examples
    --------
    >>> import hybridnb
    >>> with hybridnb.cluster("local", n_workers=1, processes=False) as c:  # doctest: +SKIP
    ...     c.client.submit(sum, [1, 2]).result()
    3
    """

    def __init__(self, started: Started, *, sites: list[str], backend: str, name: str,
                 config: HybridConfig, store: StateStore | None = None,
                 client_timeout: float = 10.0):
        self.sites = list(sites)
        self.backend = backend
        self.name = name
        self.config = config
        self._started = started
        self._store = store
        self._record: Record | None = None
        self._client: Client | None = None
        self._closed = False
        self._timeout = client_timeout
        self._dashboard: str | None = None
        self._seen: list[WorkerInfo] = []  # the workers at the last workers() call
        if store is not None:
            self._record = store.add(
                Kind.cluster, name, site="+".join(self.sites), backend=backend,
                pids=started.pids, remote_id=started.remote_id, address=started.address,
                spec={"sites": self.sites, "owns": started.owns})
        try:
            self._client = self._connect(client_timeout)
            self._dashboard = self._find_dashboard()
        except BaseException as exc:
            self._shutdown(Status.failed, error=str(exc))
            raise
        lifecycle.close_at_exit(self)
        if self._record is not None and self._store is not None:
            # The dashboard serves the scheduler's Prometheus metrics: monitoring finds
            # the cluster through this record.
            self._record = self._store.update(
                self._record.id, status=Status.running, address=self.scheduler_address,
                spec={**self._record.spec, "dashboard": self.dashboard_link})

    def _ask(self, what: str, **kwargs: Any) -> Any:
        """Call the scheduler's ``what`` handler, within the handle's timeout."""
        client = self.client
        try:
            return client.sync(getattr(client.scheduler, what), **kwargs,
                               callback_timeout=self._timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise OperationError(f"the scheduler of cluster {self.name!r} at "
                                 f"{self.scheduler_address} did not answer within "
                                 f"{self._timeout:g} s") from None

    def _find_dashboard(self) -> str | None:
        from distributed.utils import format_dashboard_link

        link = getattr(self._started.cluster, "dashboard_link", None)
        if not link:
            port = (self._ask("identity", n_workers=0).get("services") or {}).get("dashboard")
            if port is None:  # no dashboard service on that scheduler
                return None
            host = self.scheduler_address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
            link = format_dashboard_link(host, port)
        if self._started.dashboard_host:
            # The dashboard listens elsewhere than the scheduler (loopback on this
            # machine while the scheduler listens on a real interface).
            from urllib.parse import urlsplit, urlunsplit

            parts = urlsplit(link)
            netloc = f"{self._started.dashboard_host}:{parts.port}" if parts.port else \
                self._started.dashboard_host
            link = urlunsplit(parts._replace(netloc=netloc))
        return link

    def _connect(self, timeout: float) -> Client:
        from distributed import Client

        target = self._started.cluster or self._started.address
        try:
            return Client(target, security=self._started.security, timeout=timeout,
                          set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise OperationError(
                f"cannot reach the scheduler of site(s) {', '.join(self.sites)} at "
                f"{self._started.address} within {timeout:g} s ({exc}). Check that the "
                "scheduler runs and the address and port in the site's config are right"
            ) from None

    # -- what users touch ---------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The ``distributed.Client`` connected to this cluster."""
        if self._client is None or self._closed:
            raise OperationError(f"cluster {self.name!r} is closed; start a new one")
        return self._client

    @property
    def cluster(self) -> Any:
        """The underlying distributed cluster object (None when only connected)."""
        return self._started.cluster

    @property
    def record(self) -> Record | None:
        """Its record in the state store."""
        return self._record

    @property
    def scheduler_address(self) -> str:
        if self._client is not None:
            return str(self._client.scheduler.address)
        return self._started.address

    @property
    def dashboard_link(self) -> str | None:
        """Link to the Dask dashboard, when the scheduler serves one."""
        return self._dashboard

    @property
    def security(self) -> str:
        """What protects the traffic, without any key material."""
        return tls.redacted(self._started.security)

    def scale(self, n: int) -> None:
        """Ask for ``n`` workers (clusters this handle started)."""
        self._owned("scale").scale(n)

    def adapt(self, minimum: int = 0, maximum: int | None = None, **kwargs: Any) -> Any:
        """Scale between ``minimum`` and ``maximum`` workers with the load."""
        if maximum is not None and maximum < minimum:
            raise UsageError(f"adapt: maximum ({maximum}) is below minimum ({minimum})")
        return self._owned("adapt").adapt(minimum=minimum, maximum=maximum, **kwargs)

    def _owned(self, what: str) -> Any:
        if self._started.cluster is None or not hasattr(self._started.cluster, what):
            raise UsageError(f"cannot {what} cluster {self.name!r}: hybridnb only connected to "
                             f"it ({self.backend} backend); scale it where it was started")
        return self._started.cluster

    def workers(self) -> list[WorkerInfo]:
        """The workers now connected, with the site each one reports (asks the scheduler,
        within the handle's timeout)."""
        self._seen = _worker_infos(self._ask("identity", n_workers=-1).get("workers") or {})
        return list(self._seen)

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        """Block until ``n`` workers are connected (a clear error after ``timeout``)."""
        try:
            self.client.wait_for_workers(n, timeout=timeout)
        except TimeoutError:
            raise OperationError(f"only {len(self.workers())} of {n} workers joined cluster "
                                 f"{self.name!r} within {timeout:g} s") from None

    # -- residency ----------------------------------------------------------------------

    def pin(self, *, data: str | Iterable[str] | None = None,
            classification: str | Iterable[str] | None = None,
            sites: str | Iterable[str] | None = None) -> dict[str, Any]:
        """Keyword arguments that keep work where it is allowed to run.

        Pass them to ``client.compute``, ``client.submit`` or ``client.map``:
        ``data`` names configured datasets (their classifications apply),
        ``classification`` names classifications directly, ``sites`` names sites.
        Raises a clear error, instead of letting tasks wait forever, when no connected
        worker qualifies.

        >>> fut = c.client.submit(fn, x, **c.pin(data="patients"))  # doctest: +SKIP
        """
        classes = set(_as_list(classification))
        for name in _as_list(data):
            classes.add(self.config.dataset(name).classification)
        site_names = _as_list(sites)
        for s in site_names:
            self.config.site(s)  # unknown site: a clear error
        workers = self.workers()
        out: dict[str, Any] = {}
        if classes:
            need = requirements(classes)
            ok = [w for w in workers if all(w.resources.get(k, 0) >= 1 for k in need)]
            if not ok:
                allowed = [s.name for s in self.config.sites.values()
                           if all(s.allows(c) for c in classes)]
                present = sorted({w.site or "?" for w in workers}) or ["none"]
                raise UsageError(
                    f"no worker of cluster {self.name!r} may process data classified "
                    f"{', '.join(sorted(classes))}: its workers are on {', '.join(present)}; "
                    f"sites allowed: {', '.join(allowed) or 'none'}. Add an allowed site "
                    "to the cluster (hybridnb.hybrid_cluster) or run where the data may go")
            out["resources"] = need
        if site_names:
            chosen = [w.address for w in workers
                      if w.resources.get(site_resource(w.site or ""), 0) and w.site in site_names]
            if classes:
                chosen = [a for a in chosen if a in {w.address for w in ok}]
            if not chosen:
                raise UsageError(f"no worker of cluster {self.name!r} runs on site(s) "
                                 f"{', '.join(site_names)}")
            out["workers"] = chosen
            out["allow_other_workers"] = False
        return out

    def compute(self, collection: Any, *, data: str | Iterable[str] | None = None,
                classification: str | Iterable[str] | None = None,
                sites: str | Iterable[str] | None = None, **kwargs: Any) -> Any:
        """Compute a Dask collection here, pinned, and return its result."""
        pins = self.pin(data=data, classification=classification, sites=sites)
        return self.client.compute(collection, **pins, **kwargs).result()

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Disconnect, stop the cluster if this handle started it, and record it."""
        if not self._closed:
            self._shutdown(Status.stopped)

    def _shutdown(self, status: Status, error: str | None = None) -> None:
        self._closed = True
        lifecycle.forget(self)
        try:
            if self._client is not None:
                self._client.close(timeout=self._timeout)
        finally:
            try:
                if self._started.owns and self._started.cluster is not None:
                    self._started.cluster.close(timeout=self._started.close_timeout)
            finally:
                if self._started.owns and self._started.tls_dir is not None:
                    shutil.rmtree(self._started.tls_dir, ignore_errors=True)
                if self._record is not None and self._store is not None:
                    self._record = self._store.update(self._record.id, status=status,
                                                      error=error)
                for hook in self._started.on_close:  # the team ledger hears of it
                    hook(status.value)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ClusterHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        warnings.warn(f"{self!r} was never closed; call .close() or use 'with'",
                      ResourceWarning, stacklevel=2)
        if sys.is_finalizing() or lifecycle.exiting():
            return  # the event loop may be gone: waiting on it would hang the exit
        try:
            self.close()
        except Exception:  # e.g. collected on the event loop's own thread
            logger.debug("closing %r from __del__ failed", self, exc_info=True)

    # -- display: stored fields only, never a call to the scheduler ----------------------

    def _known_workers(self) -> list[WorkerInfo] | None:
        """Workers as last known without asking: the cluster object's copy (kept current
        by distributed's worker-status stream), else the last :meth:`workers` answer."""
        info = getattr(self._started.cluster, "scheduler_info", None)
        if isinstance(info, dict) and isinstance(info.get("workers"), dict):
            return _worker_infos(info["workers"])
        return list(self._seen) if self._seen else None

    def _summary(self) -> tuple[int, int, int]:
        ws = self._known_workers()
        if ws is not None:
            return len(ws), sum(w.nthreads for w in ws), sum(w.memory_limit for w in ws)
        # The totals distributed's own Client.__repr__ shows: its periodic refresh keeps
        # them, so reading them costs no round trip.
        info = getattr(self._client, "_scheduler_identity", None) or {}
        return (int(info.get("n_workers", 0)), int(info.get("total_threads", 0)),
                int(info.get("total_memory", 0)))

    def __repr__(self) -> str:
        if getattr(self, "_closed", True):
            return f"<ClusterHandle {self.name!r} on {'+'.join(self.sites)}: closed>"
        n, threads, mem = self._summary()
        return (f"<ClusterHandle {self.name!r} on {'+'.join(self.sites)} ({self.backend}): "
                f"{n} workers, {threads} threads, {format_bytes(mem)}, "
                f"security={self.security}>")

    def _repr_html_(self) -> str:
        if self._closed:
            return f"<p>ClusterHandle <b>{escape(self.name)}</b>: closed</p>"
        known = self._known_workers()
        if known is None:  # connected only, workers() not called yet: totals, no sites
            n, threads, mem = self._summary()
            rows = (f"<tr><td>all</td><td>{n}</td><td>{threads}</td>"
                    f"<td>{format_bytes(mem)}</td></tr>")
        else:
            per_site: dict[str, list[WorkerInfo]] = {}
            for w in known:
                per_site.setdefault(w.site or "?", []).append(w)
            rows = "".join(
                f"<tr><td>{escape(site)}</td><td>{len(ws)}</td>"
                f"<td>{sum(w.nthreads for w in ws)}</td>"
                f"<td>{format_bytes(sum(w.memory_limit for w in ws))}</td></tr>"
                for site, ws in sorted(per_site.items()))
        link = self.dashboard_link
        dash = (f'<a href="{escape(link)}" target="_blank">{escape(link)}</a>' if link
                else "none")
        return (f"<div><b>ClusterHandle {escape(self.name)}</b> — sites "
                f"{escape(', '.join(self.sites))}, backend {escape(self.backend)}<br>"
                f"scheduler {escape(self.scheduler_address)}, security "
                f"{escape(self.security)}, dashboard {dash}"
                "<table><tr><th>site</th><th>workers</th><th>threads</th><th>memory</th></tr>"
                f"{rows}</table></div>")


def _worker_infos(workers: dict[str, Any]) -> list[WorkerInfo]:
    return [WorkerInfo(addr, site_of(w.get("resources") or {}), int(w.get("nthreads", 0)),
                       int(w.get("memory_limit") or 0), dict(w.get("resources") or {}))
            for addr, w in workers.items()]


def _as_list(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
