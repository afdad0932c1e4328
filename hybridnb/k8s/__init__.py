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

This module holds the vocabulary every builder shares (labels, quantities) and imports
only the standard library: the builders and validators load on first use.

>>> standard_labels("gke")
{'app.kubernetes.io/managed-by': 'hybridnb', 'hybridnb.io/site': 'gke'}
>>> cpu_quantity(0.5), memory_quantity(8 * 2**30)
('500m', '8Gi')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._lazy import lazy_exports

#: Every object hybridnb creates carries this label, so ``hybridnb gc`` and people can
#: find them (``kubectl get all -l app.kubernetes.io/managed-by=hybridnb``).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "hybridnb"
#: The hybridnb site an object belongs to.
SITE_LABEL = "hybridnb.io/site"


def standard_labels(site: str | None = None,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels every hybridnb object carries, plus ``extra``.

    Parameters
    ----------
    site:
        Name of the hybridnb site the object belongs to, if any.
    extra:
        More labels; they win over the standard ones.

    Examples
    --------
    >>> standard_labels(extra={"app.kubernetes.io/name": "digits"})
    {'app.kubernetes.io/managed-by': 'hybridnb', 'app.kubernetes.io/name': 'digits'}
    """
    labels = {MANAGED_BY_LABEL: MANAGED_BY}
    if site is not None:
        labels[SITE_LABEL] = site
    labels.update(extra or {})
    return labels


def cpu_quantity(cores: float) -> str:
    """A Kubernetes CPU quantity: whole cores as ``"2"``, fractions in millicores.

    Strings, not numbers: the Dask CRDs type every quantity as a string.

    >>> cpu_quantity(2.0), cpu_quantity(1.25)
    ('2', '1250m')
    """
    if cores < 0:
        raise ValueError(f"a CPU quantity cannot be negative, got {cores!r}")
    if float(cores).is_integer():
        return str(int(cores))
    return f"{max(1, round(cores * 1000))}m"


def memory_quantity(n_bytes: int | float) -> str:
    """A Kubernetes memory quantity: the largest exact binary suffix, else bytes.

    >>> memory_quantity(256 * 2**20), memory_quantity(1_500_000_000)
    ('256Mi', '1500000000')
    """
    n = int(n_bytes)
    if n < 0:
        raise ValueError(f"a memory quantity cannot be negative, got {n_bytes!r}")
    for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n and n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


# Public name -> "module:attribute": the builders and validators import on first use.
_LAZY = {
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
    "MANAGED_BY", "MANAGED_BY_LABEL", "SITE_LABEL", "ManifestError", "ManifestProblem",
    "assert_valid", "cpu_quantity", "dask_autoscaler_manifest", "dask_cluster_manifest",
    "dns_label", "memory_quantity", "register_crd", "register_crd_schema", "standard_labels",
    "tls_secret_manifest", "tls_secret_name", "to_dns_label", "validate_manifest",
    "write_manifests",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .dask import (
        dask_autoscaler_manifest,
        dask_cluster_manifest,
        tls_secret_manifest,
        tls_secret_name,
    )
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
