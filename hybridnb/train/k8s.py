"""Training on Kubernetes: a Kubeflow ``PyTorchJob`` built by pure functions.

hybridnb renders the job; it does not submit or follow it (``fit(launcher="kubernetes")``
is refused: see :mod:`hybridnb.train.launch`). Apply what :func:`manifests` returns with
``kubectl apply`` (``hybridnb train SPEC --render kubernetes`` writes it, validated).

Each pod runs torch.distributed's elastic agent (``python -m torch.distributed.run``,
which reads the rendezvous the training operator sets in ``PET_*`` variables) around the
entry point every launcher uses, ``hybridnb.train.loop SPEC.json RUN_DIR``: the same
path as the local launcher. ``restartPolicy: ExitCode`` restarts a pod killed by a
signal or exiting with a retryable code, not one whose code raised (exit 1).

The run directory (checkpoints, metrics, logs, ``model.safetensors``, ``result.json``)
lives on a PersistentVolumeClaim (``run_claim``), never on a pod's own disk: a
restarted pod resumes from the latest checkpoint, and the weights outlive the job.
Every rank reads checkpoints when it resumes, so pods on several nodes need a
``ReadWriteMany`` claim (:func:`run_claim_manifest`). The spec travels in a ConfigMap.

>>> from hybridnb.train.spec import TrainSpec
>>> job, cm = pytorchjob(TrainSpec(name="digits", max_restarts=2), nprocs=2, image="img",
...                      run_claim="digits-run")
>>> job["kind"], job["spec"]["elasticPolicy"]["maxRestarts"]
('PyTorchJob', 2)
>>> job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["volumes"][1]
{'name': 'run', 'persistentVolumeClaim': {'claimName': 'digits-run'}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..k8s.labels import NAME_LABEL, label_key, standard_labels
from ..k8s.names import dns_label, to_dns_label

if TYPE_CHECKING:
    from .spec import TrainSpec

SPEC_MOUNT = "/etc/hybridnb/train"
#: The ``app.kubernetes.io/name`` of a run's objects.
TRAIN_APP = "hybridnb-train"
RUN_MOUNT = "/run/hybridnb"


def job_name(spec: TrainSpec) -> str:
    """The job's name: the spec's name as a DNS-1035 label (what the operator accepts).

    >>> from hybridnb.train.spec import TrainSpec
    >>> job_name(TrainSpec(name="digits_cnn.v2")), job_name(TrainSpec(name="3wine"))
    ('digits-cnn-v2', 'train-3wine')
    """
    return to_dns_label(spec.name, prefix="train")


def _labels(spec: TrainSpec, name: str) -> dict[str, str]:
    return standard_labels(extra={NAME_LABEL: TRAIN_APP, label_key("run"): name,
                                  label_key("spec-hash"): spec.hash()})


def pytorchjob(spec: TrainSpec, *, nprocs: int, image: str, run_claim: str,
               namespace: str = "default", run_dir: str = RUN_MOUNT, cpu: float = 1.0,
               memory: str = "2Gi", gpus: int = 0, env: dict[str, str] | None = None
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``PyTorchJob`` and the ``ConfigMap`` holding its spec (plain dicts, no I/O).

    Parameters
    ----------
    spec, nprocs:
        What to train, with one rank per pod.
    image:
        A container image with hybridnb, torch and the spec's model module installed.
    run_claim:
        The PersistentVolumeClaim mounted at ``run_dir``: checkpoints, weights and the
        result live there (make one with :func:`run_claim_manifest`).
    cpu, memory, gpus:
        Per pod; ``gpus`` asks for ``nvidia.com/gpu`` (ranks then use NCCL).
    env:
        Plain environment values for the ranks (no secrets: they would sit in the
        manifest).

    >>> from hybridnb.train.spec import TrainSpec
    >>> job, _ = pytorchjob(TrainSpec(), nprocs=2, image="img", run_claim="runs")
    >>> job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
    ...     "command"][:5]
    ['python', '-m', 'torch.distributed.run', '--module', 'hybridnb.train.loop']
    """
    name = job_name(spec)
    claim = dns_label(run_claim, what="run_claim (a PersistentVolumeClaim name)")
    labels = _labels(spec, name)
    resources: dict[str, Any] = {"requests": {"cpu": str(cpu), "memory": memory},
                                 "limits": {"cpu": str(cpu), "memory": memory}}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = gpus
    container = {
        "name": "pytorch",  # the training operator looks for this container name
        "image": image,
        # The elastic agent takes its rendezvous (PET_RDZV_ENDPOINT, PET_NNODES,
        # PET_MAX_RESTARTS, PET_NPROC_PER_NODE) from the operator; the loop then runs as
        # under the local launcher, with the agent's store.
        "command": ["python", "-m", "torch.distributed.run", "--module",
                    "hybridnb.train.loop", f"{SPEC_MOUNT}/spec.json", run_dir],
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
                "template": {"metadata": {"labels": dict(labels)}, "spec": {
                    "containers": [container],
                    "volumes": [{"name": "spec", "configMap": {"name": f"{name}-spec"}},
                                {"name": "run",
                                 "persistentVolumeClaim": {"claimName": claim}}]}},
            }},
        },
    }
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"{name}-spec", "namespace": namespace,
                              "labels": dict(labels)},
                 "data": {"spec.json": spec.to_json()}}
    return job, configmap


def run_claim_manifest(name: str, *, namespace: str = "default", size: str = "5Gi",
                       storage_class: str | None = None,
                       access_mode: str = "ReadWriteMany") -> dict[str, Any]:
    """A PersistentVolumeClaim for a job's run directory.

    ``ReadWriteMany`` by default: every rank reads the checkpoints when it resumes, and
    pods may land on different nodes. A single-node job may use ``ReadWriteOnce``.

    >>> pvc = run_claim_manifest("digits-run", size="1Gi")
    >>> pvc["kind"], pvc["spec"]["accessModes"], pvc["spec"]["resources"]["requests"]
    ('PersistentVolumeClaim', ['ReadWriteMany'], {'storage': '1Gi'})
    """
    spec: dict[str, Any] = {"accessModes": [access_mode],
                            "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": dns_label(name, what="run_claim (a PersistentVolumeClaim "
                                                      "name)"),
                         "namespace": namespace,
                         "labels": standard_labels(extra={NAME_LABEL: TRAIN_APP})},
            "spec": spec}


def manifests(spec: TrainSpec, *, nprocs: int, image: str, run_claim: str | None = None,
              claim_size: str | None = None, namespace: str = "default",
              **kwargs: Any) -> list[dict[str, Any]]:
    """Everything to apply, in order: the claim (when ``claim_size`` asks for a new one),
    the spec's ConfigMap, the job.

    ``run_claim`` defaults to ``<job>-run``; without ``claim_size`` it must already exist.

    >>> from hybridnb.train.spec import TrainSpec
    >>> [m["kind"] for m in manifests(TrainSpec(), nprocs=2, image="img", claim_size="1Gi")]
    ['PersistentVolumeClaim', 'ConfigMap', 'PyTorchJob']
    """
    claim = run_claim or f"{job_name(spec)}-run"
    job, configmap = pytorchjob(spec, nprocs=nprocs, image=image, run_claim=claim,
                                namespace=namespace, **kwargs)
    objs = [configmap, job]
    if claim_size is not None:
        objs.insert(0, run_claim_manifest(claim, namespace=namespace, size=claim_size))
    return objs
