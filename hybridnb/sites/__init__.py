"""Sites and clusters: a Dask cluster on any configured site, or one spanning sites.

>>> import hybridnb
>>> with hybridnb.cluster("local", n_workers=2) as c:  # doctest: +SKIP
...     c.client.submit(sum, [1, 2, 3]).result()
6
"""

from __future__ import annotations

from ..resource_tags import data_resource, site_resource, worker_resources
from .base import Backend, Started
from .factory import acluster, backend_for, cluster, connect, hybrid_cluster
from .handle import ClusterHandle, WorkerInfo
from .registry import get_backend, known_backends, register_backend, unregister_backend
from .security import InsecureSiteWarning

__all__ = [
    "Backend", "ClusterHandle", "InsecureSiteWarning", "Started", "WorkerInfo", "acluster",
    "backend_for", "cluster", "connect", "data_resource", "get_backend", "hybrid_cluster",
    "known_backends", "register_backend", "site_resource", "unregister_backend",
    "worker_resources",
]
