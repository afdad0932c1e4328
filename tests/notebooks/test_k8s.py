"""``hybridnb run NOTEBOOK --site S`` for Kubernetes sites: a validated Job, rendered or
submitted only when a cluster is configured."""

from __future__ import annotations

import pytest
import yaml

from hybridnb.cli import main
from hybridnb.config import load_config
from hybridnb.errors import UsageError
from hybridnb.k8s.pods import pod_security_problems
from hybridnb.k8s.validate import validate_manifest
from hybridnb.notebooks.k8s import notebook_job, submit_notebook, write_notebook_job

CONFIG = """
sites:
  gke:
    tier: public
    backend: kubernetes
    kubernetes:
      namespace: ml
      image: ghcr.io/example/hybridnb:1
      env: {A: "1", WANDB_API_KEY: "wandb-k3y-6d1f0a", DB_PASSWORD: "pw-0c4e9b"}
    capacity: {cpu: 64, memory: 256GiB}
  onprem:
    tier: private
    capacity: {cpu: 8, memory: 32GiB}
"""


def test_job_runs_the_same_command_and_is_valid(notebook):
    run = notebook_job(notebook, {"lr": 0.5}, image="img:1", namespace="ml", timeout=30)
    job, cm = run.job, run.config_map
    assert validate_manifest(job) == [] and validate_manifest(cm) == []
    assert run.secret is None  # nothing secret asked for: no Secret
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["hybridnb", "run"]
    assert "-f" in container["command"] and container["command"][-2:] == ["--timeout", "30"]
    assert yaml.safe_load(cm["data"]["parameters.yaml"]) == {"lr": 0.5}
    assert cm["data"]["notebook.ipynb"] == notebook.read_text()
    assert job["metadata"]["namespace"] == "ml" and job["spec"]["backoffLimit"] == 0
    with pytest.raises(UsageError, match="look like secrets"):
        notebook_job(notebook, {"api_token": "x"}, image="img:1")


def test_cli_renders_and_refuses_without_a_cluster(notebook, hybridnb_home, monkeypatch,
                                                   capsys):
    (hybridnb_home / "work" / "hybridnb.yaml").write_text(CONFIG)
    monkeypatch.setenv("KUBECONFIG", str(hybridnb_home / "no-kubeconfig"))
    out = hybridnb_home / "render"
    assert main(["run", str(notebook), "--site", "gke", "--render", str(out),
                 "-p", "lr", "0.2"]) == 0
    printed = capsys.readouterr()
    (path,) = (p for p in out.glob("*.yaml") if not p.name.endswith(".secret.yaml"))
    cm, job = yaml.safe_load_all(path.read_text())
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "ml"
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "A", "value": "1"} in env
    assert validate_manifest(job) == [] and validate_manifest(cm) == []
    # The site's secret-looking variables: by reference, their values in the Secret file.
    secret_file = out / f"{job['metadata']['name']}.secret.yaml"
    secret = yaml.safe_load(secret_file.read_text())
    by_name = {e["name"]: e for e in env}
    for var, value in (("WANDB_API_KEY", "wandb-k3y-6d1f0a"), ("DB_PASSWORD", "pw-0c4e9b")):
        ref = by_name[var]["valueFrom"]["secretKeyRef"]
        assert "value" not in by_name[var]
        assert ref["name"] == secret["metadata"]["name"] and secret["stringData"][ref["key"]] \
            == value
        for where in (path.read_text(), printed.out, printed.err):
            assert value not in where
    assert validate_manifest(secret) == []
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert "*.secret.yaml" in (out / ".gitignore").read_text().splitlines()
    assert str(secret_file) in printed.out
    assert main(["run", str(notebook), "--site", "gke"]) == 2
    assert "no configured cluster" in capsys.readouterr().err
    assert main(["run", str(notebook), "--site", "onprem"]) == 2
    assert "backend: kubernetes" in capsys.readouterr().err
    assert main(["run", str(notebook), "--render", str(out)]) == 2
    with pytest.raises(UsageError, match="no configured cluster"):
        submit_notebook(notebook, site="gke", config=load_config())


def test_job_reads_notebook_secrets_by_reference(notebook, hybridnb_home, monkeypatch):
    """Secrets a notebook reads with hybridnb.secret(NAME) reach the pod as
    HYBRIDNB_SECRET_<NAME> from the Job's Secret, never as a value in the Job."""
    monkeypatch.setenv("HYBRIDNB_SECRET_API_TOKEN", "api-7e2b9c")
    run = notebook_job(notebook, image="img:1", namespace="ml", secrets=["api_token"])
    (container,) = run.job["spec"]["template"]["spec"]["containers"]
    (entry,) = [e for e in container["env"] if e["name"] == "HYBRIDNB_SECRET_API_TOKEN"]
    assert entry["valueFrom"]["secretKeyRef"] == {"name": f"{run.name}-secrets",
                                                  "key": "api_token"}
    assert run.secret is not None and run.secret["stringData"] == {"api_token": "api-7e2b9c"}
    assert "api-7e2b9c" not in yaml.safe_dump_all(run.manifests())
    path, secret_path = write_notebook_job(run, hybridnb_home / "render")
    assert secret_path is not None and "api-7e2b9c" in secret_path.read_text()
    assert "api-7e2b9c" not in path.read_text()
    with pytest.raises(UsageError, match="no secret 'missing'"):
        notebook_job(notebook, image="img:1", secrets=["missing"])
    with pytest.raises(UsageError, match="secret name"):
        notebook_job(notebook, image="img:1", secrets=["a b"])


def test_job_pods_run_as_a_numeric_non_root_user(notebook):
    pod = notebook_job(notebook, image="img:1").job["spec"]["template"]["spec"]
    assert pod_security_problems(pod) == []
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == \
        (1000, 1000)
