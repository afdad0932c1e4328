"""Dask on Kubernetes: ``DaskCluster``, ``DaskAutoscaler`` and the TLS ``Secret``.

The cluster spec comes from dask-kubernetes' own ``make_cluster_spec`` — the operator's
maintainers own its shape — and hybridnb adds what a site needs:

- ``dask scheduler``/``dask worker`` as commands (distributed 2026.6 removed the
  ``dask-scheduler``/``dask-worker`` scripts that ``make_cluster_spec`` still uses);
- the site's namespace, image, environment and service account;
- worker CPU and memory from ``sites.<name>.kubernetes.worker_cpu/worker_memory``, as
  Kubernetes requests (and a memory limit) *and* as ``--nthreads``/``--memory-limit``,
  so Dask uses what the pod was given rather than what the node has;
- the worker resources every hybridnb worker carries (``site-<name>``,
  ``data-<classification>``; see :mod:`hybridnb.resource_tags`), so work can be pinned
  to the site;
- all of it from a :class:`KubeSite` of plain values, which
  :func:`hybridnb.sites.kubernetes.kube_site` makes from a configured site: the
  builders know nothing of the configuration;
- labels ``app.kubernetes.io/managed-by: hybridnb`` and ``hybridnb.io/site: <name>``
  (the operator copies them to the scheduler and worker pods);
- TLS when ``site.tls``: certificates mounted from a Secret (see
  :func:`tls_secret_manifest`), ``--protocol tls`` and the
  ``DASK_DISTRIBUTED__COMM__TLS__*`` settings. dask-kubernetes has no TLS option of
  its own, so this is done here.

Caveat for TLS: dask-kubernetes' ``KubeCluster`` and the operator's RPC fallback reach
the scheduler at ``tcp://``; with TLS, connect with ``Client("tls://…",
security=...)`` (the operator scales through the scheduler's HTTP API, which still works).

>>> site = KubeSite("gke", "ghcr.io/dask/dask:2024.8.0", tls=False,
...                 resources={"site-gke": 1e6})
>>> dask_cluster_manifest(site, "demo", n_workers=2)["spec"]["worker"]["replicas"]
2
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..resource_tags import resources_arg
from .labels import standard_labels
from .quantities import cpu_quantity, memory_quantity
from .validate import dns_label, label_value

#: Where the TLS Secret is mounted in scheduler and worker containers.
TLS_MOUNT_PATH = "/etc/hybridnb/tls"
TLS_VOLUME = "hybridnb-tls"
#: The scheduler's comm port in dask-kubernetes' spec (its Service port ``tcp-comm``).
SCHEDULER_PORT = 8786


@dataclass(frozen=True)
class KubeSite:
    """What a ``DaskCluster`` needs to know of its site, as plain values.

    ``resources`` are the Dask worker resources every worker carries (``site-<name>``,
    ``data-<classification>``); ``worker_cpu``/``worker_memory`` (cores, bytes) size the
    workers' pods; ``tls`` encrypts the cluster's comms.
    """

    name: str
    #: The scheduler's and workers' image (configured: hybridnb's worker image).
    image: str
    namespace: str = "default"
    env: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    worker_cpu: float | None = None
    worker_memory: int | None = None
    tls: bool = True
    resources: Mapping[str, float] = field(default_factory=dict)


def tls_secret_name(cluster: str) -> str:
    """Name of the Secret holding cluster ``cluster``'s certificates.

    >>> tls_secret_name("demo")
    'demo-tls'
    """
    return f"{cluster}-tls"


def dask_tls_env(mount_path: str = TLS_MOUNT_PATH) -> dict[str, str]:
    """Dask settings, as environment variables, for TLS with certificates in ``mount_path``.

    One certificate (``tls.crt``/``tls.key``, signed by ``ca.crt``) serves the scheduler,
    the workers and in-cluster clients; Dask checks the CA, not host names.

    >>> dask_tls_env()["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"]
    '/etc/hybridnb/tls/ca.crt'
    """
    env = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
           "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": f"{mount_path}/ca.crt"}
    for role in ("SCHEDULER", "WORKER", "CLIENT"):
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] = f"{mount_path}/tls.crt"
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] = f"{mount_path}/tls.key"
    return env


def dask_cluster_manifest(
    site: KubeSite,
    name: str,
    n_workers: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
    resources: Mapping[str, Any] | None = None,
    scheduler_resources: Mapping[str, Any] | None = None,
    dask_resources: Mapping[str, float] | None = None,
    tls: bool | None = None,
    tls_secret: str | None = None,
    scheduler_service_type: str | None = None,
    idle_timeout: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``DaskCluster`` resource (``kubernetes.dask.org/v1``) for ``name`` on ``site``.

    Parameters
    ----------
    site:
        The site: namespace, image, environment, service account, worker size, TLS and
        worker resources (:func:`hybridnb.sites.kubernetes.kube_site` makes one from a
        site with ``backend: kubernetes``).
    name:
        The cluster's name: a DNS-1123 label of at most 53 characters (the operator
        names the scheduler Service ``<name>-scheduler``).
    n_workers:
        Workers in the default worker group; None uses dask-kubernetes' configuration
        (``kubernetes.count.start``), as ``KubeCluster`` does.
    env:
        Environment of scheduler and workers, over the site's ``kubernetes.env``.
    resources:
        Kubernetes resource requirements of a worker container; None derives them from
        the site's ``worker_cpu``/``worker_memory`` (none when those are unset).
    scheduler_resources:
        Kubernetes resource requirements of the scheduler container.
    dask_resources:
        Dask worker resources; None gives the site's (``site.resources``).
    tls:
        Encrypt and authenticate Dask comms; None uses ``site.tls``. The certificates
        come from the Secret ``tls_secret`` (default ``<name>-tls``, see
        :func:`tls_secret_manifest`), which must exist in the namespace with keys
        ``tls.crt``, ``tls.key`` and ``ca.crt``.
    scheduler_service_type, idle_timeout:
        Passed to ``make_cluster_spec``; None keeps its defaults (``ClusterIP``, 0).
    labels:
        More labels for the ``DaskCluster`` (and so its pods).

    Raises
    ------
    UsageError
        A name that Kubernetes would reject, or a negative worker count.

    Examples
    --------
    >>> m = dask_cluster_manifest(KubeSite("gke", "ghcr.io/dask/dask:2024.8.0", namespace="ml"),
    ...                           "demo", n_workers=3)
    >>> m["metadata"]["namespace"], m["metadata"]["labels"]["hybridnb.io/site"]
    ('ml', 'gke')
    >>> m["spec"]["scheduler"]["spec"]["containers"][0]["args"][-2:]  # TLS
    ['--protocol', 'tls']
    """
    dns_label(name, what="cluster name", max_length=53)
    namespace = dns_label(site.namespace, what=f"namespace of site '{site.name}'")
    label_value(site.name, what="site name (used as a label value)")
    if n_workers is not None and (isinstance(n_workers, bool) or int(n_workers) < 0):
        raise UsageError(f"n_workers must be a whole number >= 0, got {n_workers!r}")
    use_tls = site.tls if tls is None else tls
    secret = dns_label(tls_secret or tls_secret_name(name), what="TLS secret name",
                       max_length=253)

    import dask.config
    from dask_kubernetes.operator import make_cluster_spec

    if n_workers is None:
        n_workers = dask.config.get("kubernetes.count.start")
    passed = {k: v for k, v in (("scheduler_service_type", scheduler_service_type),
                                ("idle_timeout", idle_timeout)) if v is not None}
    merged_env = {k: str(v) for k, v in {**site.env, **(env or {})}.items()}
    # distributed 2026.6 removed the dask-worker/dask-scheduler scripts that
    # make_cluster_spec still runs; `dask worker`/`dask scheduler` exist since 2022.10.
    manifest = _drop_none(make_cluster_spec(
        name=name, image=site.image, n_workers=int(n_workers), resources=None,
        env=merged_env or None, worker_command="dask worker", **passed))

    manifest["metadata"]["namespace"] = namespace
    manifest["metadata"]["labels"] = standard_labels(site.name, labels)
    scheduler_pod = manifest["spec"]["scheduler"]["spec"]
    worker_pod = manifest["spec"]["worker"]["spec"]
    scheduler, worker = scheduler_pod["containers"][0], worker_pod["containers"][0]
    if scheduler["args"][:1] == ["dask-scheduler"]:
        scheduler["args"] = ["dask", "scheduler", *scheduler["args"][1:]]

    worker_resources = dict(resources) if resources is not None else _site_resources(site)
    if worker_resources:
        worker["resources"] = worker_resources
    if scheduler_resources:
        scheduler["resources"] = dict(scheduler_resources)
    worker["args"] += ["--resources", resources_arg(site.resources if dask_resources is None
                                                    else dask_resources)]
    if site.worker_cpu:
        # Without this, Dask starts one thread per core of the node, not of the pod.
        worker["args"] += ["--nthreads", str(max(1, int(site.worker_cpu)))]
    if site.worker_memory:
        worker["args"] += ["--memory-limit", str(site.worker_memory)]
    if site.service_account:
        scheduler_pod["serviceAccountName"] = site.service_account
        worker_pod["serviceAccountName"] = site.service_account
    if use_tls:
        _add_tls(scheduler_pod, worker_pod, name=name, namespace=namespace, secret=secret)
    return manifest


def dask_autoscaler_manifest(name: str, minimum: int, maximum: int, *,
                             site: KubeSite | None = None, namespace: str | None = None,
                             ) -> dict[str, Any]:
    """The ``DaskAutoscaler`` that keeps cluster ``name`` between ``minimum`` and
    ``maximum`` workers, following the scheduler's adaptive target.

    Parameters
    ----------
    name:
        The ``DaskCluster``'s name (the autoscaler has the same name, as
        ``KubeCluster.adapt`` does it).
    minimum, maximum:
        Bounds on the number of workers, ``0 <= minimum <= maximum``.
    site:
        The cluster's site: its namespace and labels.
    namespace:
        Namespace; None uses the site's (or none, for the current one).

    Examples
    --------
    >>> dask_autoscaler_manifest("demo", 1, 10)["spec"]
    {'cluster': 'demo', 'minimum': 1, 'maximum': 10}
    """
    dns_label(name, what="cluster name", max_length=53)
    for label, value in (("minimum", minimum), ("maximum", maximum)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"autoscaler {label} must be a whole number >= 0, got {value!r}")
    if minimum > maximum:
        raise UsageError(f"autoscaler minimum ({minimum}) is above its maximum ({maximum})")
    metadata: dict[str, Any] = {"name": name,
                                "labels": standard_labels(site.name if site else None)}
    if namespace is None and site is not None:
        namespace = site.namespace
    if namespace is not None:
        metadata["namespace"] = dns_label(namespace, what="namespace")
    return {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskAutoscaler",
            "metadata": metadata,
            "spec": {"cluster": name, "minimum": minimum, "maximum": maximum}}


def tls_secret_manifest(name: str, namespace: str, cert_pem: str | bytes, key_pem: str | bytes,
                        ca_pem: str | bytes, *, labels: Mapping[str, str] | None = None,
                        ) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret with the keys a TLS Dask cluster mounts.

    Keys: ``tls.crt`` (the certificate, PEM), ``tls.key`` (its private key, PEM) and
    ``ca.crt`` (the CA that signed it, PEM), base64-encoded as Secrets require.

    Examples
    --------
    >>> pem = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"
    >>> key = "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n"
    >>> s = tls_secret_manifest("demo-tls", "ml", pem, key, pem)
    >>> s["type"], sorted(s["data"])
    ('kubernetes.io/tls', ['ca.crt', 'tls.crt', 'tls.key'])
    """
    dns_label(name, what="secret name", max_length=253)
    dns_label(namespace, what="namespace")
    data = {}
    for key, arg, value in (("tls.crt", "cert_pem", cert_pem), ("tls.key", "key_pem", key_pem),
                            ("ca.crt", "ca_pem", ca_pem)):
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if b"-----BEGIN " not in raw:
            raise UsageError(f"{arg} is not PEM (no '-----BEGIN' line); pass the file's "
                             "contents, not its path")
        data[key] = base64.b64encode(raw).decode("ascii")
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": standard_labels(extra=labels)},
            "type": "kubernetes.io/tls", "data": data}


def _drop_none(value: Any) -> Any:
    # make_cluster_spec writes "env": None, "resources": None; the CRD schema says
    # array/object, and an explicit null only hides what was meant.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _site_resources(opts: Any) -> dict[str, Any]:
    # Requests for scheduling; a memory limit so the kubelet and Dask agree on memory.
    # No CPU limit: CFS throttling slows every thread, and --nthreads already bounds Dask.
    requests, limits = {}, {}
    if opts.worker_cpu:
        requests["cpu"] = cpu_quantity(opts.worker_cpu)
    if opts.worker_memory:
        requests["memory"] = limits["memory"] = memory_quantity(opts.worker_memory)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _add_tls(scheduler_pod: dict[str, Any], worker_pod: dict[str, Any], *, name: str,
             namespace: str, secret: str) -> None:
    tls_env = [{"name": k, "value": v} for k, v in dask_tls_env(TLS_MOUNT_PATH).items()]
    mount = {"name": TLS_VOLUME, "mountPath": TLS_MOUNT_PATH, "readOnly": True}
    for pod in (scheduler_pod, worker_pod):
        # The Secret's default file mode is kept: images that run as a non-root user
        # could not read a key restricted to root.
        pod.setdefault("volumes", []).append({"name": TLS_VOLUME,
                                              "secret": {"secretName": secret}})
        container = pod["containers"][0]
        container.setdefault("volumeMounts", []).append(mount)
        container["env"] = [*container.get("env", []), *tls_env]
        container["args"] += ["--protocol", "tls"]
    # The operator sets DASK_SCHEDULER_ADDRESS to tcp:// unless the worker already has it.
    worker_pod["containers"][0]["env"].append({
        "name": "DASK_SCHEDULER_ADDRESS",
        "value": f"tls://{name}-scheduler.{namespace}.svc.cluster.local:{SCHEDULER_PORT}"})
