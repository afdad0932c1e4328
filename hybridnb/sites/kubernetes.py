"""``kubernetes`` backend: dask-kubernetes' operator ``KubeCluster`` (create or connect).

The ``DaskCluster`` resource comes from :mod:`hybridnb.k8s.dask`, a pure function tested
against the CRD schema without a cluster; this module only submits it, and only when a
Kubernetes context is configured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OperationError, UsageError
from .base import Backend, Started

if TYPE_CHECKING:
    from ..config import Site
    from ..k8s.dask import KubeSite
    from ..state import Record, StateStore


def kube_site(site: Site) -> KubeSite:
    """The plain values :mod:`hybridnb.k8s.dask`'s builders need of a configured site.

    >>> from hybridnb.config import load_config
    >>> site = load_config(overrides={"sites": {"gke": {"backend": "kubernetes",
    ...     "tier": "public", "kubernetes": {"namespace": "ml"},
    ...     "capacity": {"cpu": 64, "memory": "256GiB"}}}}).site("gke")
    >>> k = kube_site(site)
    >>> k.namespace, k.tls, sorted(k.resources)[-1]
    ('ml', True, 'site-gke')
    """
    from ..config import KubernetesOptions
    from ..k8s.dask import KubeSite
    from ..resource_tags import worker_resources

    if site.backend != "kubernetes":
        raise UsageError(f"site '{site.name}' uses the '{site.backend}' backend; a "
                         "DaskCluster needs a site with 'backend: kubernetes'")
    opts = site.kubernetes or KubernetesOptions()
    return KubeSite(site.name, image=opts.image, namespace=opts.namespace, env=dict(opts.env),
                    service_account=opts.service_account, worker_cpu=opts.worker_cpu,
                    worker_memory=opts.worker_memory, tls=site.tls is not False,
                    resources=worker_resources(site))


def kube_context(context: str | None = None) -> str | None:
    """The kubeconfig context in use (``context`` if it exists), or None without one."""
    import yaml

    paths = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
    for path in paths.split(os.pathsep):
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        names = [c.get("name") for c in data.get("contexts") or []]
        if context is not None:
            if context in names:
                return f"{context} ({path})"
            continue
        if data.get("current-context"):
            return f"{data['current-context']} ({path})"
    return None


class KubernetesBackend(Backend):
    """A ``DaskCluster`` in the site's namespace, adaptive through ``DaskAutoscaler``."""

    name = "kubernetes"

    def security(self, directory: Any = None) -> None:
        return None  # certificates come from a Kubernetes Secret (see hybridnb.k8s.dask)

    def manifest(self, name: str, n_workers: int | None) -> dict[str, Any]:
        from ..k8s.dask import dask_cluster_manifest

        return dask_cluster_manifest(kube_site(self.site), name, n_workers=n_workers or 1)

    def start(self, *, name: str, n_workers: int | None, threads_per_worker: int | None,
              memory_limit: str | float | None, security: Any) -> Started:
        # TLS on Kubernetes comes from a Secret mounted by the manifest, not from here.
        opts = self.options
        if self.site.tls:
            # The manifest mounts certificates from a Secret, but dask-kubernetes connects
            # with tcp:// only; creating the Secret and a TLS client is not built yet.
            raise UsageError(
                f"site '{self.site.name}' requires TLS, and live TLS Kubernetes clusters are "
                "not supported yet: render the manifest (hybridnb.k8s.dask_cluster_manifest) "
                f"and apply it with its Secret, or set sites.{self.site.name}.tls: false "
                "inside a trusted network")
        if kube_context(opts.context if opts else None) is None:
            want = f"context '{opts.context}'" if opts and opts.context else "a context"
            raise UsageError(
                f"site '{self.site.name}' runs on Kubernetes but {want} is not configured: "
                "point KUBECONFIG at a kubeconfig (or create ~/.kube/config), or set "
                f"sites.{self.site.name}.kubernetes.context")
        if opts and opts.context:
            os.environ.setdefault("KUBECONTEXT", opts.context)
        from dask_kubernetes.operator import KubeCluster

        manifest = self.manifest(name, n_workers)
        try:
            cluster = KubeCluster(custom_cluster_spec=manifest,
                                  namespace=manifest["metadata"].get("namespace"),
                                  shutdown_on_close=True)
        except Exception as exc:
            raise OperationError(f"site '{self.site.name}': KubeCluster {name!r} failed to "
                                 f"start: {exc}") from exc
        return Started(address=cluster.scheduler_address, cluster=cluster,
                       remote_id=f"{manifest['metadata'].get('namespace')}/{name}",
                       close_timeout=3600.0)  # KubeCluster's own: deleting pods takes time

    @classmethod
    def stop_record(cls, record: Record, store: StateStore) -> None:
        from dask_kubernetes.operator import KubeCluster

        namespace, _, name = (record.remote_id or "").partition("/")
        KubeCluster.from_name(name, namespace=namespace, shutdown_on_close=True).close()
