"""Training on Kubernetes: refused as a launcher (it could not bring anything back), and a
rendered PyTorchJob whose run directory lives on a PersistentVolumeClaim.

There is no cluster here: the manifests are validated against the PyTorchJob CRD schema
shipped in hybridnb/k8s/schemas and the core schemas, and the pod's command is run as
the training operator would run it (two "pods" as local processes with the operator's
PET_* rendezvous variables, sharing a directory as they would share the claim).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from hybridnb.cli import main
from hybridnb.errors import UsageError
from hybridnb.images import default_image
from hybridnb.k8s.validate import validate_manifest
from hybridnb.state import StateStore
from hybridnb.train import TrainSpec, fit, pytorchjob
from hybridnb.train.k8s import SPEC_MOUNT, manifests, run_claim_manifest

from .conftest import tiny

CONFIG = """
sites:
  gke:
    tier: public
    backend: kubernetes
    kubernetes: {namespace: ml, image: ghcr.io/example/hybridnb:1}
    capacity: {cpu: 64, memory: 256GiB}
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig(path, port):
    """A kubeconfig whose cluster is a loopback port nobody listens on."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def test_fit_refuses_the_kubernetes_launcher_and_says_how_to_render(hybridnb_home):
    with pytest.raises(UsageError) as err:
        fit(tiny(), nprocs=2, launcher="kubernetes")
    text = str(err.value)
    assert "cannot yet follow a PyTorchJob" in text
    assert "--render kubernetes" in text and "run_claim" in text
    assert StateStore().list() == []  # nothing recorded, nothing started
    assert not (hybridnb_home / "state" / "runs").exists()


def test_cli_kubernetes_launcher_exits_2_even_with_a_configured_cluster(
        hybridnb_home, monkeypatch, capsys):
    # A kubernetes site and a kubeconfig: the old launcher would have created a job there
    # and reported an empty result as success. Nothing may be contacted.
    (hybridnb_home / "work" / "hybridnb.yaml").write_text(CONFIG)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(hybridnb_home / "kubeconfig",
                                                    closed_port())))
    spec = hybridnb_home / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny()))
    assert main(["train", str(spec), "--site", "gke", "--launcher", "kubernetes"]) == 2
    err = capsys.readouterr().err
    assert "launcher 'kubernetes' is not available" in err and "--render kubernetes" in err


def test_rendered_job_keeps_its_run_directory_on_a_claim():
    spec = TrainSpec(name="digits_cnn", max_restarts=2)
    job, cm = pytorchjob(spec, nprocs=3, image="img:1", run_claim="digits-runs")
    pod = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["run"] == {"name": "run",
                              "persistentVolumeClaim": {"claimName": "digits-runs"}}
    assert "emptyDir" not in json.dumps(job)
    (container,) = pod["containers"]
    run_mount = next(m for m in container["volumeMounts"] if m["name"] == "run")
    assert container["command"][-1] == run_mount["mountPath"]  # the loop's RUN_DIR
    assert container["command"][:5] == ["python", "-m", "torch.distributed.run", "--module",
                                        "hybridnb.train.loop"]
    assert validate_manifest(job) == [] and validate_manifest(cm) == []
    pvc = run_claim_manifest("digits-runs", namespace="default", size="2Gi")
    assert validate_manifest(pvc) == []
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    with pytest.raises(UsageError, match="run_claim"):
        pytorchjob(spec, nprocs=2, image="img", run_claim="Not_A_Name")


def test_job_names_become_dns_1035_labels():
    for name in ("wine.v2", "3wine", "Digits_CNN"):
        objs = manifests(TrainSpec(name=name), nprocs=2, image="img", claim_size="1Gi")
        assert [p for obj in objs for p in validate_manifest(obj)] == []


def test_cli_renders_a_validated_job_its_configmap_and_claim(hybridnb_home, capsys):
    spec = hybridnb_home / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny(name="digits.v2")))
    out = hybridnb_home / "k8s"
    assert main(["train", str(spec), "--render", "kubernetes", "--out", str(out), "-n", "3",
                 "--image", "ghcr.io/x/hybridnb:1", "--claim-size", "2Gi",
                 "--epochs", "4"]) == 0
    files = sorted(p.name for p in out.glob("*.yaml"))
    assert files == ["00-persistentvolumeclaim-digits-v2-run.yaml",
                     "01-configmap-digits-v2-spec.yaml", "02-pytorchjob-digits-v2.yaml"]
    pvc, cm, job = (yaml.safe_load((out / f).read_text()) for f in files)
    assert all(validate_manifest(obj) == [] for obj in (pvc, cm, job))
    volumes = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["volumes"]
    assert {"name": "run", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}} \
        in volumes
    assert json.loads(cm["data"]["spec.json"])["epochs"] == 4  # overrides reach the job
    assert "kubectl apply -f" in capsys.readouterr().out
    # Without --image: hybridnb's worker image (hybridnb.config.images).
    assert main(["train", str(spec), "--render", "kubernetes", "--out", str(out / "d")]) == 0
    job = yaml.safe_load(next((out / "d").glob("*-pytorchjob-*.yaml")).read_text())
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "image"] == default_image("worker")


@pytest.mark.slow
def test_the_pod_command_trains_under_the_operators_rendezvous(tmp_path, hybridnb_home):
    """Run the rendered container command twice, as two pods would: the training
    operator's environment (PET_RDZV_ENDPOINT, PET_NNODES, …) and one shared run
    directory standing for the claim. Both ranks join one group; the claim ends up with
    the weights, the result and the checkpoints."""
    spec = TrainSpec.model_validate(tiny(name="k8s-pods", max_steps=4, checkpoint_every=2))
    job, cm = pytorchjob(spec, nprocs=2, image="img", run_claim="runs")
    policy = job["spec"]["elasticPolicy"]
    (container,) = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"][
        "containers"]
    config_dir, claim = tmp_path / "spec", tmp_path / "claim"
    config_dir.mkdir()
    claim.mkdir()
    for key, text in cm["data"].items():
        (config_dir / key).write_text(text)
    command = [sys.executable, *container["command"][1:]]  # "python" in the image
    command = [str(config_dir / "spec.json") if c == f"{SPEC_MOUNT}/spec.json" else c
               for c in command]
    command[-1] = str(claim)
    # What the operator sets (pkg/controller.v1/pytorch/elastic.go in training-operator).
    env = {**os.environ, "PET_RDZV_BACKEND": policy["rdzvBackend"],
           "PET_RDZV_ENDPOINT": f"127.0.0.1:{closed_port()}",
           "PET_NNODES": f"{policy['minReplicas']}:{policy['maxReplicas']}",
           "PET_MAX_RESTARTS": str(policy["maxRestarts"]),
           "PET_NPROC_PER_NODE": job["spec"]["nprocPerNode"], "PET_RDZV_ID": "k8s-pods"}
    pods = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [pod.communicate(timeout=240)[0] for pod in pods]
    assert [pod.returncode for pod in pods] == [0, 0], outputs
    result = json.loads((claim / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 4
    assert (claim / "model.safetensors").is_file()
    assert (claim / "checkpoints" / "latest").is_file()
    assert {p.name for p in (claim / "logs").glob("rank*.log")} == {"rank0.log", "rank1.log"}
