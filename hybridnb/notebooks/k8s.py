"""``hybridnb run NOTEBOOK --site S`` on a Kubernetes site: a Job running the same command.

:func:`notebook_job` is a pure function: it returns a ConfigMap holding the notebook and
its parameters, and a ``batch/v1`` Job whose container runs ``hybridnb run`` on them,
both validated against the Kubernetes schemas. :func:`submit_notebook` creates them, and
only when the site has a configured cluster (a kubeconfig context); otherwise it says so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import HybridConfig

# A ConfigMap holds at most 1 MiB; leave room for the parameters and metadata.
MAX_NOTEBOOK_BYTES = 900 * 1024
IN_DIR, OUT_DIR = "/hybridnb/in", "/hybridnb/out"


def notebook_job(notebook: str | Path, parameters: dict[str, Any] | None = None, *,
                 image: str, namespace: str = "default", env: dict[str, str] | None = None,
                 timeout: float | None = None, service_account: str | None = None,
                 name: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Job and ConfigMap that run ``notebook`` headless on a cluster.

    The container runs ``hybridnb run IN/NB.ipynb OUT/NB.ipynb -f IN/parameters.yaml``;
    the executed notebook stays in the pod's ``emptyDir`` (read it with ``kubectl cp``
    while the pod exists; persistent outputs come with the JupyterHub work).

    >>> import json, tempfile, pathlib
    >>> nb = pathlib.Path(tempfile.mkdtemp()) / "train.ipynb"
    >>> _ = nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
    ...                                "nbformat_minor": 5}))
    >>> job, cm = notebook_job(nb, {"lr": 0.1}, image="ghcr.io/example/hybridnb:1")
    >>> job["kind"], job["spec"]["template"]["spec"]["containers"][0]["command"][:2]
    ('Job', ['hybridnb', 'run'])
    """
    import yaml

    from ..k8s.validate import assert_valid, to_dns_label
    from .secrets import refuse_secret_parameters

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
    job_name = name or to_dns_label(f"nb-{path.stem}-{digest}", max_length=52)
    labels = {"app.kubernetes.io/name": "hybridnb-notebook",
              "app.kubernetes.io/managed-by": "hybridnb", "hybridnb/notebook": job_name}
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": job_name, "namespace": namespace, "labels": labels},
        "data": {"notebook.ipynb": text,
                 "parameters.yaml": yaml.safe_dump(params, sort_keys=True)},
    }
    command = ["hybridnb", "run", f"{IN_DIR}/notebook.ipynb", f"{OUT_DIR}/{path.name}",
               "-f", f"{IN_DIR}/parameters.yaml", "--report"]
    if timeout is not None:
        command += ["--timeout", f"{timeout:g}"]
    container = {
        "name": "notebook", "image": image, "command": command, "workingDir": OUT_DIR,
        "env": [{"name": k, "value": v} for k, v in sorted((env or {}).items())]
               + [{"name": "HYBRIDNB_HOME", "value": f"{OUT_DIR}/.hybridnb"}],
        "volumeMounts": [{"name": "in", "mountPath": IN_DIR, "readOnly": True},
                         {"name": "out", "mountPath": OUT_DIR}],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "containers": [container],
        "volumes": [{"name": "in", "configMap": {"name": job_name}},
                    {"name": "out", "emptyDir": {}}],
    }
    if service_account:
        pod["serviceAccountName"] = service_account
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "namespace": namespace, "labels": labels},
        # Exit codes 3-5 are the notebook's own failures: retrying would not help.
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }
    assert_valid(config_map)
    assert_valid(job)
    return job, config_map


def submit_notebook(notebook: str | Path, parameters: dict[str, Any] | None = None, *,
                    site: str, config: HybridConfig | None = None,
                    timeout: float | None = None) -> dict[str, Any]:
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
    job, config_map = notebook_job(notebook, parameters, image=opts.image,
                                   namespace=opts.namespace, env=opts.env, timeout=timeout,
                                   service_account=opts.service_account)
    from ..sites.kubernetes import kube_context

    if kube_context(opts.context) is None:
        raise UsageError(f"site '{site}' has no configured cluster (no kubeconfig context); "
                         "render the Job instead: hybridnb run NOTEBOOK --site "
                         f"{site} --render DIR")
    from kubernetes import client
    from kubernetes import config as kconfig

    kconfig.load_kube_config(context=opts.context)
    # The client serializes plain dicts as it does its model objects.
    client.CoreV1Api().create_namespaced_config_map(opts.namespace, config_map)  # type: ignore[arg-type]
    client.BatchV1Api().create_namespaced_job(opts.namespace, job)  # type: ignore[arg-type]
    return job
