"""``hybridnb.cluster`` and ``hybridnb.hybrid_cluster``: a Dask cluster on any site(s)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import team
from ..errors import UsageError
from .handle import ClusterHandle
from .registry import get_backend

if TYPE_CHECKING:
    from ..config import HybridConfig, Site
    from ..state import StateStore
    from .base import Backend


def _config(config: HybridConfig | None) -> HybridConfig:
    if config is not None:
        return config
    from ..config import load_config

    return load_config()


def _store(record: bool, store: StateStore | None) -> StateStore | None:
    if not record:
        return None
    if store is not None:
        return store
    from ..state import StateStore

    return StateStore()


def backend_for(site: Site, config: HybridConfig) -> Backend:
    """The backend object that runs ``site``."""
    return get_backend(site.backend)(site, config)


def tls_dir(name: str) -> Path:
    """Where a cluster's temporary certificates live while it runs (private to the user)."""
    from ..state import state_home

    return state_home() / "tls" / name


def _adapt(handle: ClusterHandle, adapt: Any) -> None:
    if adapt is None or adapt is False:
        return
    if adapt is True:
        handle.adapt()
    elif isinstance(adapt, Mapping):
        handle.adapt(**adapt)
    elif isinstance(adapt, Sequence) and len(adapt) == 2:
        handle.adapt(minimum=adapt[0], maximum=adapt[1])
    else:
        raise UsageError(f"adapt={adapt!r}: pass True, (minimum, maximum) or "
                         "{'minimum': m, 'maximum': n}")


def cluster(site: str = "local", n_workers: int | None = None,
            threads_per_worker: int | None = None, memory_limit: str | float | None = None,
            adapt: Any = None, *, name: str | None = None, config: HybridConfig | None = None,
            store: StateStore | None = None, record: bool = True,
            **backend_options: Any) -> ClusterHandle:
    """Start (or connect to) a Dask cluster on ``site`` and return its handle.

    Parameters
    ----------
    site:
        A configured site; ``"local"`` is the embedded default.
    n_workers, threads_per_worker, memory_limit:
        ``None`` lets the backend decide (for ``local``, distributed's own defaults).
    adapt:
        ``True``, ``(minimum, maximum)`` or ``{"minimum": .., "maximum": ..}``.
    name:
        Shown in ``hybridnb ps``; default ``SITE-xxxxxx``.
    record:
        Record it in the state store (``hybridnb ps``/``gc``).
    **backend_options:
        Passed to the backend's ``start`` (e.g. ``processes=False`` for ``local``).

    Examples
    --------
    >>> import hybridnb
    >>> with hybridnb.cluster("local", n_workers=2) as c:  # doctest: +SKIP
    ...     c.client.submit(pow, 2, 10).result()
    1024
    """
    config = _config(config)
    backend = backend_for(config.site(site), config)
    name = name or f"{site}-{uuid.uuid4().hex[:6]}"
    lease = team.admit("cluster", site, team.cluster_size(n_workers, threads_per_worker, adapt),
                       name=name, config=config)  # the team's quotas (no-op outside a hub)
    directory = tls_dir(name)
    try:
        security = backend.security(directory)
        started = backend.start(name=name, n_workers=n_workers,
                                threads_per_worker=threads_per_worker,
                                memory_limit=memory_limit, security=security,
                                **backend_options)
    except BaseException:
        lease.release("failed")
        shutil.rmtree(directory, ignore_errors=True)
        raise
    from . import security as tls

    try:
        tls.warn_if_plain([backend.site], started.security)  # it runs: say so if in the clear
    except BaseException:  # warnings made errors (-W error): stop what started
        lease.release("failed")
        if started.owns and started.cluster is not None:
            started.cluster.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    if directory.exists():
        started.tls_dir = directory
    started.dashboard_host = started.dashboard_host or backend.dashboard_host
    started.on_close.append(lease.release)  # the ledger hears when it stops
    handle = _handle(started, [site], backend.name, name, config, _store(record, store),
                     timeout=getattr(backend, "timeout", 10.0))
    try:
        _adapt(handle, adapt)
    except BaseException:
        handle.close()
        raise
    return handle


def _handle(started: Any, sites: list[str], backend: str, name: str, config: HybridConfig,
            store: StateStore | None, timeout: float = 10.0) -> ClusterHandle:
    try:
        return ClusterHandle(started, sites=sites, backend=backend, name=name, config=config,
                             store=store, client_timeout=timeout)
    except BaseException:
        if started.owns and started.cluster is not None:
            started.cluster.close()
        raise


def hybrid_cluster(sites: Sequence[str], n_workers: int | Mapping[str, int] | None = None,
                   threads_per_worker: int | None = None,
                   memory_limit: str | float | None = None, *,
                   scheduler_site: str | None = None, name: str | None = None,
                   config: HybridConfig | None = None, store: StateStore | None = None,
                   record: bool = True) -> ClusterHandle:
    """One scheduler, workers from several sites, each worker tagged with its site.

    The scheduler runs on ``scheduler_site``, else ``policies.scheduler_site``, else the
    first private site listed. Work on a dataset is pinned with
    ``handle.pin(data=...)``: only workers of sites allowed to hold its classification
    run it. Sites of the ``scheduler`` backend that share one scheduler address are
    joined by connecting to it (their workers carry their site tags).

    Examples
    --------
    >>> c = hybridnb.hybrid_cluster(["onprem", "aws"], n_workers=2)  # doctest: +SKIP
    >>> c.compute(df.amount.sum(), data="patients")  # runs on onprem only  # doctest: +SKIP
    """
    config = _config(config)
    names = list(dict.fromkeys(sites))
    if not names:
        raise UsageError("hybrid_cluster needs at least one site")
    chosen = [config.site(s) for s in names]
    sched_name = scheduler_site or config.policies.scheduler_site or next(
        (s.name for s in chosen if s.tier == "private"), names[0])
    sched = config.site(sched_name)
    name = name or f"hybrid-{uuid.uuid4().hex[:6]}"
    backends = {s.name: backend_for(s, config) for s in chosen}
    lease = team.admit("cluster", "+".join(names), team.cluster_size(
        sum(n_workers.values()) if isinstance(n_workers, Mapping) else
        (n_workers or 1) * len(names), threads_per_worker), name=name, config=config)
    try:
        handle = _hybrid(names, chosen, sched, backends, n_workers, threads_per_worker,
                         memory_limit, name, config, _store(record, store))
    except BaseException:
        lease.release("failed")
        raise
    handle._started.on_close.append(lease.release)
    return handle


def _hybrid(names: list[str], chosen: list[Site], sched: Site, backends: dict[str, Backend],
            n_workers: int | Mapping[str, int] | None, threads_per_worker: int | None,
            memory_limit: str | float | None, name: str, config: HybridConfig,
            store_: StateStore | None) -> ClusterHandle:
    from . import security as tls
    from .spec import start_spec_cluster

    if all(s.backend == "scheduler" for s in [*chosen, sched]):
        addresses = {s.scheduler.address for s in [*chosen, sched] if s.scheduler}
        if len(addresses) > 1:
            raise UsageError(f"sites {', '.join(names)} connect to different schedulers "
                             f"({', '.join(sorted(addresses))}); a hybrid cluster has one")
        sched_backend = backend_for(sched, config)
        for backend in backends.values():  # each site's TLS requirement holds
            backend.security()
        security = sched_backend.security()
        tls.warn_if_plain(list({s.name: s for s in [*chosen, sched]}.values()), security)
        started = sched_backend.start(name=name, n_workers=None, threads_per_worker=None,
                                      memory_limit=None, security=security)
        return _handle(started, names, "scheduler", name, config, store_,
                       timeout=getattr(backends[names[0]], "timeout", 10.0))

    sched_backend = backends.get(sched.name) or backend_for(sched, config)
    # One cluster, one security: TLS for all when any site needs it (their defaults say
    # whether its processes listen beyond loopback).
    tls_needed = any(s.tls for s in [*chosen, sched])
    security = tls.temporary(tls_dir(name)) if tls_needed else None
    per_site = (n_workers if isinstance(n_workers, Mapping)
                else dict.fromkeys(names, n_workers))
    unknown = set(per_site) - set(names)
    if unknown:
        raise UsageError(f"n_workers names sites not in this cluster: {', '.join(unknown)}")
    workers: dict[str, dict[str, Any]] = {}
    for s in names:
        workers.update(backends[s].worker_specs(per_site.get(s), threads_per_worker,
                                                memory_limit, security))
    scheduler = sched_backend.scheduler_spec(security)
    tls.warn_if_plain(list({s.name: s for s in [*chosen, sched]}.values()), security)
    spec_cluster = start_spec_cluster(name, scheduler, workers, security)
    from .base import Started

    started = Started(address=spec_cluster.scheduler_address, cluster=spec_cluster,
                      security=security, tls_dir=tls_dir(name) if tls_needed else None,
                      dashboard_host=sched_backend.dashboard_host)
    return _handle(started, names, "hybrid", name, config, store_)


async def acluster(site: str = "local", **kwargs: Any) -> ClusterHandle:
    """:func:`cluster` without blocking the event loop (for ``async`` code).

    >>> async with await hybridnb.sites.acluster("local") as c:  # doctest: +SKIP
    ...     ...
    """
    return await asyncio.to_thread(cluster, site, **kwargs)


def connect(name: str, *, config: HybridConfig | None = None,
            store: StateStore | None = None, timeout: float = 10.0) -> ClusterHandle:
    """A handle on a running cluster started elsewhere (``hybridnb cluster up``), by name
    or id. Closing it disconnects; the cluster keeps running.

    >>> c = hybridnb.connect("local-1a2b3c")  # doctest: +SKIP
    """
    from ..state import StateStore
    from . import security as tls
    from .base import Started

    config = _config(config)
    store = store or StateStore()
    records = [r for r in store.list("cluster", active=True) if name in (r.name, r.id)]
    if not records or not records[0].address:
        running = ", ".join(r.name for r in store.list("cluster", active=True)) or "none"
        raise UsageError(f"no running cluster called {name!r}; running: {running}")
    rec, address = records[0], records[0].address
    directory = tls_dir(rec.name)
    security = (tls.from_files(directory / "tls.crt", directory / "tls.crt",
                               directory / "tls.key")
                if address.startswith("tls://") and directory.exists() else None)
    started = Started(address=address, security=security, owns=False)
    return _handle(started, rec.spec.get("sites", [rec.site]), rec.backend or "?", rec.name,
                   config, None, timeout)
