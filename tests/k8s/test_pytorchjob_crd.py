"""The Kubeflow PyTorchJob CRD schema shipped with hybridnb, against the rendered job."""

from __future__ import annotations

import copy
from importlib.resources import files

import pytest

from hybridnb.k8s.validate import ManifestError, assert_valid, crd_kinds, validate_manifest
from hybridnb.train import TrainSpec, pytorchjob


@pytest.fixture
def job():
    spec = TrainSpec(name="digits_cnn", max_restarts=2)
    rendered, _ = pytorchjob(
        spec, nprocs=4, image="ghcr.io/x/hybridnb:1", gpus=1, env={"OMP_NUM_THREADS": "1"},
        run_claim="digits-runs",
    )
    return rendered


def test_schema_is_package_data_with_its_source_and_license():
    text = (files("hybridnb.k8s") / "schemas" / "kubeflow.org_pytorchjobs.v1.yaml").read_text()
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    for needed in (
        "kubeflow/training-operator",
        "v1.9.0",
        "Apache License, Version 2.0",
        "kubeflow.org_pytorchjobs.yaml",
    ):
        assert needed in header
    assert "PyTorchJob (kubeflow.org/v1)" in crd_kinds()


def test_rendered_job_and_configmap_validate(job):
    _, configmap = pytorchjob(TrainSpec(name="digits_cnn"), nprocs=2, image="img",
                              run_claim="digits-runs")
    assert validate_manifest(job) == []
    assert validate_manifest(configmap) == []
    assert assert_valid(job) is job


def test_wrong_types_and_missing_replica_specs_are_named(job):
    bad = copy.deepcopy(job)
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] = 1
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "four"
    problems = {(p.path, p.message) for p in validate_manifest(bad)}
    worker = "$.spec.pytorchReplicaSpecs.Worker"
    assert (f"{worker}.restartPolicy", "1 is not of type 'string'") in problems
    assert (f"{worker}.replicas", "'four' is not of type 'integer'") in problems

    del bad["spec"]["pytorchReplicaSpecs"]
    with pytest.raises(
        ManifestError,
        match=r"PyTorchJob/digits-cnn: "
        r"\$\.spec\.pytorchReplicaSpecs: required field is missing",
    ):
        assert_valid(bad)


def test_the_operators_webhook_rules(job):
    bad = copy.deepcopy(job)
    specs = bad["spec"]["pytorchReplicaSpecs"]
    specs["Worker"]["restartPolicy"] = "Sometimes"
    specs["Chief"] = specs["Worker"]
    bad["metadata"]["name"] = "1-digits"
    problems = {p.path: p.message for p in validate_manifest(bad)}
    assert (
        "'Sometimes' is not one of ['Always', 'OnFailure', 'Never', 'ExitCode']"
        in (problems["$.spec.pytorchReplicaSpecs.Worker.restartPolicy"])
    )
    assert problems["$.spec.pytorchReplicaSpecs"] == "'Chief' is not one of ['Master', 'Worker']"
    assert "DNS-1035 label" in problems["$.metadata.name"]


def test_unknown_fields_get_a_suggestion(job):
    bad = copy.deepcopy(job)
    bad["spec"]["elasticPolicy"]["maxRestart"] = 3
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imag"] = "x"
    problems = {p.path: p.message for p in validate_manifest(bad)}
    container = "$.spec.pytorchReplicaSpecs.Worker.template.spec.containers[0]"
    assert problems == {
        "$.spec.elasticPolicy.maxRestart": (
            "unknown field 'maxRestart' (did you mean 'maxRestarts'?)"
        ),
        f"{container}.imag": "unknown field 'imag' (did you mean 'image'?)",
    }
