"""Kubernetes manifests as pure functions, and their validation.

Builders return plain dicts — no I/O, no cluster, no client library — so they are tested
against the official schemas without infrastructure, and the code that talks to a
cluster (``hybridnb.sites.kubernetes``, later training and serving) only submits them.

- :mod:`hybridnb.k8s.dask`: ``DaskCluster``, ``DaskAutoscaler`` and the TLS ``Secret``;
- :mod:`hybridnb.k8s.validate`: :func:`validate_manifest` (kubernetes-validate for core
  kinds, the CRD's ``openAPIV3Schema`` for custom resources), :func:`assert_valid`,
  :func:`write_manifests`, and the DNS name rules (:func:`to_dns_label` makes every name
  hybridnb derives from a user's words);
- :mod:`hybridnb.k8s.pods`: the security contexts of every pod hybridnb renders (a
  numeric non-root user, the *restricted* profile) and their check;
- :mod:`hybridnb.k8s.secrets`: Secrets, referred to by name and written apart (0600,
  git-ignored), so that no other manifest holds a secret value;
- :mod:`hybridnb.k8s.monitoring`: the prometheus-operator ``ServiceMonitor``.

The vocabulary every builder shares lives in :mod:`hybridnb.k8s.labels` (labels, one
``hybridnb.io/`` prefix) and :mod:`hybridnb.k8s.quantities`; everything here loads on
first use.

>>> from hybridnb.k8s import cpu_quantity, memory_quantity, standard_labels
>>> standard_labels("gke")
{'app.kubernetes.io/managed-by': 'hybridnb', 'hybridnb.io/site': 'gke'}
>>> cpu_quantity(0.5), memory_quantity(8 * 2**30)
('500m', '8Gi')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# Public name -> "module:attribute": the builders and validators import on first use.
_LAZY = {
    "MANAGED_BY": "hybridnb.k8s.labels:MANAGED_BY",
    "MANAGED_BY_LABEL": "hybridnb.k8s.labels:MANAGED_BY_LABEL",
    "SITE_LABEL": "hybridnb.k8s.labels:SITE_LABEL",
    "standard_labels": "hybridnb.k8s.labels:standard_labels",
    "label_key": "hybridnb.k8s.labels:label_key",
    "cpu_quantity": "hybridnb.k8s.quantities:cpu_quantity",
    "memory_quantity": "hybridnb.k8s.quantities:memory_quantity",
    "KubeSite": "hybridnb.k8s.dask:KubeSite",
    "dask_cluster_manifest": "hybridnb.k8s.dask:dask_cluster_manifest",
    "dask_autoscaler_manifest": "hybridnb.k8s.dask:dask_autoscaler_manifest",
    "tls_secret_manifest": "hybridnb.k8s.dask:tls_secret_manifest",
    "tls_secret_name": "hybridnb.k8s.dask:tls_secret_name",
    "ManifestProblem": "hybridnb.k8s.validate:ManifestProblem",
    "ManifestError": "hybridnb.k8s.validate:ManifestError",
    "validate_manifest": "hybridnb.k8s.validate:validate_manifest",
    "assert_valid": "hybridnb.k8s.validate:assert_valid",
    "write_manifests": "hybridnb.k8s.validate:write_manifests",
    "register_crd_schema": "hybridnb.k8s.validate:register_crd_schema",
    "register_crd": "hybridnb.k8s.validate:register_crd",
    "dns_label": "hybridnb.k8s.validate:dns_label",
    "to_dns_label": "hybridnb.k8s.validate:to_dns_label",
}

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "SITE_LABEL",
    "KubeSite",
    "ManifestError",
    "ManifestProblem",
    "assert_valid",
    "cpu_quantity",
    "dask_autoscaler_manifest",
    "dask_cluster_manifest",
    "dns_label",
    "label_key",
    "memory_quantity",
    "register_crd",
    "register_crd_schema",
    "standard_labels",
    "tls_secret_manifest",
    "tls_secret_name",
    "to_dns_label",
    "validate_manifest",
    "write_manifests",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .dask import (
        KubeSite,
        dask_autoscaler_manifest,
        dask_cluster_manifest,
        tls_secret_manifest,
        tls_secret_name,
    )
    from .labels import MANAGED_BY, MANAGED_BY_LABEL, SITE_LABEL, label_key, standard_labels
    from .quantities import cpu_quantity, memory_quantity
    from .validate import (
        ManifestError,
        ManifestProblem,
        assert_valid,
        dns_label,
        register_crd,
        register_crd_schema,
        to_dns_label,
        validate_manifest,
        write_manifests,
    )

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
