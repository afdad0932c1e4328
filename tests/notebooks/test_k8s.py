"""``hybridnb run NOTEBOOK --site S`` for Kubernetes sites: a validated Job, rendered or
submitted only when a cluster is configured."""

from __future__ import annotations

import pytest
import yaml

from hybridnb.cli import main
from hybridnb.config import load_config
from hybridnb.errors import UsageError
from hybridnb.k8s.validate import validate_manifest
from hybridnb.notebooks.k8s import notebook_job, submit_notebook

CONFIG = """
sites:
  gke:
    tier: public
    backend: kubernetes
    kubernetes: {namespace: ml, image: ghcr.io/example/hybridnb:1, env: {A: "1"}}
    capacity: {cpu: 64, memory: 256GiB}
  onprem:
    tier: private
    capacity: {cpu: 8, memory: 32GiB}
"""


def test_job_runs_the_same_command_and_is_valid(notebook):
    job, cm = notebook_job(notebook, {"lr": 0.5}, image="img:1", namespace="ml", timeout=30)
    assert validate_manifest(job) == [] and validate_manifest(cm) == []
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
    (path,) = out.glob("*.yaml")
    cm, job = yaml.safe_load_all(path.read_text())
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "ml"
    assert {"name": "A", "value": "1"} in job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert validate_manifest(job) == [] and validate_manifest(cm) == []
    capsys.readouterr()
    assert main(["run", str(notebook), "--site", "gke"]) == 2
    assert "no configured cluster" in capsys.readouterr().err
    assert main(["run", str(notebook), "--site", "onprem"]) == 2
    assert "backend: kubernetes" in capsys.readouterr().err
    assert main(["run", str(notebook), "--render", str(out)]) == 2
    with pytest.raises(UsageError, match="no configured cluster"):
        submit_notebook(notebook, site="gke", config=load_config())
