"""``hybridnb run NOTEBOOK --site S`` on a Kubernetes site: a Job running the same command.

:func:`notebook_job` builds a ConfigMap holding the notebook and its parameters, a
``batch/v1`` Job whose container runs ``hybridnb run`` on them, and, when the notebook
needs secrets, a Secret that the Job reads with ``secretKeyRef`` — all validated against
the Kubernetes schemas. No secret value is ever in the Job or the ConfigMap: the Secret
is written to a file of its own (mode 0600, git-ignored, :mod:`hybridnb.k8s.secrets`) by
:func:`write_notebook_job`, or created through the API by :func:`submit_notebook`, which
runs only when the site has a configured cluster (a kubeconfig context).

Secrets: the site's ``kubernetes.env`` entries whose names look secret (``*_TOKEN``,
``*_PASSWORD``, ``*_KEY`` …, :func:`hybridnb.notebooks.secrets.looks_secret`), and the
names given as ``secrets`` (read here with :func:`hybridnb.secret`, and in the notebook
with ``hybridnb.secret(NAME)`` from ``$HYBRIDNB_SECRET_<NAME>``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import HybridConfig

# A ConfigMap holds at most 1 MiB; leave room for the parameters and metadata.
MAX_NOTEBOOK_BYTES = 900 * 1024
IN_DIR, OUT_DIR = "/hybridnb/in", "/hybridnb/out"


@dataclass
class NotebookJob:
    """What runs a notebook on a cluster: the Job, its ConfigMap, and its Secret (None
    when it needs none). Only :meth:`manifests` may be shown or committed."""

    job: dict[str, Any]
    config_map: dict[str, Any]
    secret: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.job["metadata"]["name"])

    def manifests(self) -> list[dict[str, Any]]:
        """The ConfigMap and the Job: no secret value in either."""
        return [self.config_map, self.job]


def notebook_job(notebook: str | Path, parameters: dict[str, Any] | None = None, *,
                 image: str, namespace: str = "default", env: dict[str, str] | None = None,
                 timeout: float | None = None, service_account: str | None = None,
                 name: str | None = None, secrets: Sequence[str] = ()) -> NotebookJob:
    """The Job, ConfigMap and (if needed) Secret that run ``notebook`` headless.

    The container runs ``hybridnb run IN/NB.ipynb OUT/NB.ipynb -f IN/parameters.yaml``;
    the executed notebook stays in the pod's ``emptyDir`` (read it with ``kubectl cp``
    while the pod exists; persistent outputs come with the JupyterHub work). ``env``
    entries whose names look secret, and ``secrets`` (names of :func:`hybridnb.secret`
    values), reach the container through the Secret ``JOB-secrets``.

    >>> import json, tempfile, pathlib
    >>> nb = pathlib.Path(tempfile.mkdtemp()) / "train.ipynb"
    >>> _ = nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
    ...                                "nbformat_minor": 5}))
    >>> run = notebook_job(nb, {"lr": 0.1}, image="ghcr.io/example/hybridnb:1",
    ...                    env={"OMP_NUM_THREADS": "1", "WANDB_API_KEY": "k3y"})
    >>> run.job["spec"]["template"]["spec"]["containers"][0]["command"][:2]
    ['hybridnb', 'run']
    >>> [e.get("value", e.get("valueFrom")) for e in
    ...  run.job["spec"]["template"]["spec"]["containers"][0]["env"][:2]]  # doctest: +ELLIPSIS
    ['1', {'secretKeyRef': {'name': 'nb-train-...-secrets', 'key': 'WANDB_API_KEY'}}]
    """
    import yaml

    from ..k8s.labels import NAME_LABEL, label_key, standard_labels
    from ..k8s.pods import container_security_context, pod_security_context
    from ..k8s.secrets import secret_manifest, secret_ref
    from ..k8s.validate import assert_valid, to_dns_label
    from .secrets import looks_secret, refuse_secret_parameters, secret

    path = Path(notebook)
    if not path.is_file():
        raise UsageError(f"notebook not found: {path}")
    text = path.read_text(encoding="utf-8")
    if len(text.encode()) > MAX_NOTEBOOK_BYTES:
        raise UsageError(f"{path.name} is {len(text.encode()) // 1024} KiB: a ConfigMap holds "
                         "under 1 MiB; clear its outputs (jupyter nbconvert --clear-output)")
    params = dict(parameters or {})
    refuse_secret_parameters(list(params))
    digest = hashlib.sha256((text + repr(sorted(params.items()))).encode()).hexdigest()[:8]
    # 52: room for "-secrets", and for the pod names the Job controller derives.
    job_name = to_dns_label(name or f"nb-{path.stem}-{digest}", max_length=52)
    secret_name = f"{job_name}-secrets"
    labels = standard_labels(extra={NAME_LABEL: "hybridnb-notebook", label_key("job"): job_name})
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": job_name, "namespace": namespace, "labels": dict(labels)},
        "data": {"notebook.ipynb": text,
                 "parameters.yaml": yaml.safe_dump(params, sort_keys=True)},
    }
    command = ["hybridnb", "run", f"{IN_DIR}/notebook.ipynb", f"{OUT_DIR}/{path.name}",
               "-f", f"{IN_DIR}/parameters.yaml", "--report"]
    if timeout is not None:
        command += ["--timeout", f"{timeout:g}"]
    values: dict[str, str] = {}
    env_list: list[dict[str, Any]] = []
    for key, value in sorted((env or {}).items()):
        if looks_secret(key):  # a value in a manifest is readable by anyone who reads it
            values[key] = value
            env_list.append({"name": key, "valueFrom": secret_ref(secret_name, key)})
        else:
            env_list.append({"name": key, "value": value})
    for wanted in sorted(set(secrets)):
        if not re.match(r"^[A-Za-z0-9_.-]+$", wanted):
            raise UsageError(f"secret name {wanted!r}: letters, digits, '_', '-' and '.' "
                             "only (a Secret's keys)")
        values[wanted] = secret(wanted).reveal()
        env_list.append({"name": f"HYBRIDNB_SECRET_{wanted.upper()}",
                         "valueFrom": secret_ref(secret_name, wanted)})
    env_list.append({"name": "HYBRIDNB_HOME", "value": f"{OUT_DIR}/.hybridnb"})
    container = {
        "name": "notebook", "image": image, "command": command, "workingDir": OUT_DIR,
        "env": env_list,
        # The kernel writes its runtime files under $HOME: the root stays writable.
        "securityContext": container_security_context(read_only_root=False),
        "volumeMounts": [{"name": "in", "mountPath": IN_DIR, "readOnly": True},
                         {"name": "out", "mountPath": OUT_DIR}],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "containers": [container],
        "securityContext": pod_security_context(volumes=True),
        "volumes": [{"name": "in", "configMap": {"name": job_name}},
                    {"name": "out", "emptyDir": {}}],
    }
    if service_account:
        pod["serviceAccountName"] = service_account
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "namespace": namespace, "labels": dict(labels)},
        # Exit codes 3-5 are the notebook's own failures: retrying would not help.
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400,
                 "template": {"metadata": {"labels": dict(labels)}, "spec": pod}},
    }
    secret_obj = (secret_manifest(secret_name, values, namespace=namespace, labels=labels)
                  if values else None)
    for obj in (config_map, job, *([secret_obj] if secret_obj else [])):
        assert_valid(obj)
    return NotebookJob(job, config_map, secret_obj)


def write_notebook_job(run: NotebookJob, out_dir: str | Path) -> tuple[Path, Path | None]:
    """Write ``run`` into ``out_dir``: ``NAME.yaml`` (ConfigMap and Job) and, if it has
    one, its Secret alone in ``NAME.secret.yaml`` (mode 0600, git-ignored).

    Returns both paths (the second None without a Secret). The Secret is written first:
    ``kubectl apply -f out_dir`` then finds it before the Job's pod needs it.
    """
    import yaml

    from ..fileio import atomic_write_text
    from ..k8s.secrets import SECRET_SUFFIX, write_secret_file

    out = Path(out_dir)
    secret_path = None
    if run.secret is not None:
        secret_path = write_secret_file(run.secret, out / f"{run.name}{SECRET_SUFFIX}")
    path = atomic_write_text(out / f"{run.name}.yaml",
                             yaml.safe_dump_all(run.manifests(), sort_keys=False))
    return path, secret_path


def submit_notebook(notebook: str | Path, parameters: dict[str, Any] | None = None, *,
                    site: str, config: HybridConfig | None = None,
                    timeout: float | None = None, secrets: Sequence[str] = ()
                    ) -> dict[str, Any]:
    """Create the notebook's Job on ``site``'s cluster; returns the Job.

    Raises :class:`UsageError` when ``site`` is not a Kubernetes site or no cluster is
    configured (no kubeconfig context).
    """
    from ..config import load_config

    cfg = config or load_config()
    opts = cfg.site(site).kubernetes
    if opts is None:
        raise UsageError(f"site '{site}' is not a kubernetes site: notebooks run on "
                         "'local' or on a site with 'backend: kubernetes'")
    run = notebook_job(notebook, parameters, image=opts.image, namespace=opts.namespace,
                       env=opts.env, timeout=timeout, service_account=opts.service_account,
                       secrets=secrets)
    from ..sites.kubernetes import kube_context

    if kube_context(opts.context) is None:
        raise UsageError(f"site '{site}' has no configured cluster (no kubeconfig context); "
                         "render the Job instead: hybridnb run NOTEBOOK --site "
                         f"{site} --render DIR")
    from kubernetes import client
    from kubernetes import config as kconfig

    kconfig.load_kube_config(context=opts.context)
    core = client.CoreV1Api()
    # The client serializes plain dicts as it does its model objects.
    if run.secret is not None:
        core.create_namespaced_secret(opts.namespace, run.secret)  # type: ignore[arg-type]
    core.create_namespaced_config_map(opts.namespace, run.config_map)  # type: ignore[arg-type]
    created = client.BatchV1Api().create_namespaced_job(opts.namespace, run.job)  # type: ignore[arg-type]
    uid = getattr(created.metadata, "uid", None)
    if run.secret is not None and uid:  # deleted with the Job (its TTL), not left behind
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": run.name, "uid": uid}
        core.patch_namespaced_secret(run.secret["metadata"]["name"], opts.namespace,
                                     {"metadata": {"ownerReferences": [owner]}})
    return run.job
