"""Training on Kubernetes: a Kubeflow ``PyTorchJob`` built by a pure function.

The job runs the same entry point as every other launcher
(``python -m hybridnb.train.loop SPEC.json RUN_DIR``) under the training operator's
elastic policy (c10d rendezvous, ``maxRestarts``), with ``restartPolicy: ExitCode``:
a rank killed by a signal or exiting with a retryable code is restarted, a rank whose
code raised (exit 1) is not. The spec travels in a ConfigMap.

>>> from hybridnb.train.spec import TrainSpec
>>> job, cm = pytorchjob(TrainSpec(name="digits", max_restarts=2), nprocs=2, image="img")
>>> job["kind"], job["spec"]["elasticPolicy"]["maxRestarts"]
('PyTorchJob', 2)
>>> job["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"]
'ExitCode'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import HybridConfig
    from .result import TrainResult
    from .spec import TrainSpec

SPEC_MOUNT = "/etc/hybridnb/train"


def pytorchjob(spec: TrainSpec, *, nprocs: int, image: str, namespace: str = "default",
               run_dir: str = "/run/hybridnb", cpu: float = 1.0, memory: str = "2Gi",
               gpus: int = 0, env: dict[str, str] | None = None
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``PyTorchJob`` and the ``ConfigMap`` holding its spec (plain dicts, no I/O).

    ``run_dir`` should be a shared volume (checkpoints must survive a pod's restart);
    mount one through the returned template when the cluster has one.
    """
    name = spec.name.lower().replace("_", "-").replace(".", "-")
    labels = {"app.kubernetes.io/name": "hybridnb-train", "hybridnb/run": name,
              "hybridnb/spec-hash": spec.hash()}
    resources: dict[str, Any] = {"requests": {"cpu": str(cpu), "memory": memory},
                                 "limits": {"cpu": str(cpu), "memory": memory}}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = gpus
    container = {
        "name": "pytorch",  # the training operator looks for this container name
        "image": image,
        "command": ["python", "-m", "hybridnb.train.loop", f"{SPEC_MOUNT}/spec.json", run_dir],
        "env": [{"name": k, "value": v} for k, v in sorted((env or {}).items())],
        "resources": resources,
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
                         {"name": "run", "mountPath": run_dir}],
    }
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "elasticPolicy": {"rdzvBackend": "c10d", "minReplicas": nprocs,
                              "maxReplicas": nprocs, "maxRestarts": spec.max_restarts},
            # One rank per pod. (elasticPolicy.nProcPerNode is deprecated since v1.7.)
            "nprocPerNode": "1",
            "pytorchReplicaSpecs": {"Worker": {
                "replicas": nprocs,
                "restartPolicy": "ExitCode",
                "template": {"metadata": {"labels": labels}, "spec": {
                    "containers": [container],
                    "volumes": [{"name": "spec", "configMap": {"name": f"{name}-spec"}},
                                {"name": "run", "emptyDir": {}}]}},
            }},
        },
    }
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"{name}-spec", "namespace": namespace, "labels": labels},
                 "data": {"spec.json": spec.to_json()}}
    return job, configmap


def submit(spec: TrainSpec, *, nprocs: int, site: str, config: HybridConfig | None = None
           ) -> TrainResult:
    """Create the job on the site's cluster; a clear error when no cluster is configured."""
    from ..config import load_config
    from ..sites.kubernetes import kube_context

    cfg = config or load_config()
    opts = cfg.site(site).kubernetes
    if opts is None or kube_context() is None:
        raise UsageError(f"launcher 'kubernetes' needs a kubernetes site with a configured "
                         f"cluster (kubeconfig); site '{site}' has none. Render the manifest "
                         "with hybridnb.train.pytorchjob(spec, nprocs=..., image=...) instead")
    from kubernetes import client
    from kubernetes import config as kconfig

    kconfig.load_kube_config(context=opts.context)
    job, cm = pytorchjob(spec, nprocs=nprocs, image=opts.image, namespace=opts.namespace,
                         env=opts.env)
    client.CoreV1Api().create_namespaced_config_map(opts.namespace, cm)  # type: ignore[arg-type]
    client.CustomObjectsApi().create_namespaced_custom_object(
        "kubeflow.org", "v1", opts.namespace, "pytorchjobs", job)
    from .result import TrainResult

    # hybridnb does not follow Kubernetes jobs yet: the result names the job to watch.
    name = job["metadata"]["name"]
    return TrainResult(spec.name, f"k8s://{opts.namespace}/pytorchjobs/{name}", {}, [],
                       launcher="kubernetes", extra={"job": job})
