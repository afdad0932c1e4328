"""Manifest validation: core kinds through kubernetes-validate, custom resources through
their CRD schemas, names and labels through Kubernetes' rules; and manifest files."""

from __future__ import annotations

import copy
import doctest
import importlib

import pytest
import yaml

from hybridnb.errors import OperationError, UsageError
from hybridnb.k8s import crds
from hybridnb.k8s import validate as v
from hybridnb.k8s.validate import (
    ManifestError,
    assert_valid,
    dns_label,
    register_crd,
    register_crd_schema,
    to_dns_label,
    validate_manifest,
    write_manifests,
)

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "digits", "namespace": "ml",
                 "labels": {"app.kubernetes.io/name": "digits"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "digits"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "digits"}},
            "spec": {"containers": [{
                "name": "server", "image": "ghcr.io/example/digits:1",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}},
    },
}


@pytest.fixture
def crd_registry(monkeypatch):
    """Registrations made by a test disappear after it."""
    monkeypatch.setattr(crds, "_CRD_SCHEMAS", dict(crds._CRD_SCHEMAS))
    monkeypatch.setattr(crds, "_CRD_VALIDATORS", dict(crds._CRD_VALIDATORS))


@pytest.mark.parametrize("manifest", [
    DEPLOYMENT,
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "digits"},
     "spec": {"selector": {"app": "digits"}, "ports": [{"port": 80, "targetPort": "http"}]}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}},
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
     "spec": {"template": {"spec": {"restartPolicy": "Never",
                                    "containers": [{"name": "c", "image": "busybox"}]}}}},
    {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
     "metadata": {"name": "digits"},
     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                 "name": "digits"},
              "minReplicas": 1, "maxReplicas": 4,
              "metrics": [{"type": "Resource", "resource": {
                  "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "digits"},
     "spec": {"rules": [{"host": "digits.example.com", "http": {"paths": [{
         "path": "/", "pathType": "Prefix",
         "backend": {"service": {"name": "digits", "port": {"number": 80}}}}]}}]}},
], ids=lambda m: m["kind"])
def test_valid_core_kinds(manifest):
    assert validate_manifest(manifest) == []


def test_invalid_deployment_fails_with_paths():
    bad = copy.deepcopy(DEPLOYMENT)
    spec = bad["spec"]
    spec["replicas"] = "two"
    spec["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    del spec["selector"]
    spec["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    problems = {p.path: p.message for p in validate_manifest(bad)}
    assert set(problems) == {
        "$.spec.replicas", "$.spec.selector",
        "$.spec.template.spec.containers[0].imagePullPolcy",
        "$.spec.template.spec.containers[0].ports[0].containerPort",
    }
    assert problems["$.spec.selector"] == "required field is missing"
    assert "did you mean 'imagePullPolicy'" in problems[
        "$.spec.template.spec.containers[0].imagePullPolcy"]
    assert "'two' is not of type 'integer'" in problems["$.spec.replicas"]
    with pytest.raises(ManifestError) as info:
        assert_valid(bad)
    text = str(info.value)
    assert text.startswith("invalid Kubernetes manifest (4 problems):")
    assert "Deployment/digits: $.spec.replicas:" in text


def test_names_namespaces_and_labels():
    bad = copy.deepcopy(DEPLOYMENT)
    bad["metadata"].update(name="Digits_Server", namespace="ML")
    bad["metadata"]["labels"] = {"bad key!": "ok", "tier": "has space", "a/b/c": "x"}
    paths = sorted(p.path for p in validate_manifest(bad))
    assert paths == ["$.metadata.labels.tier", '$.metadata.labels["a/b/c"]',
                     '$.metadata.labels["bad key!"]', "$.metadata.name", "$.metadata.namespace"]
    # Services need DNS-1035 labels: no leading digit.
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1digits"},
               "spec": {"ports": [{"port": 80}]}}
    assert [p.path for p in validate_manifest(service)] == ["$.metadata.name"]
    nameless = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}
    assert [str(p) for p in validate_manifest(nameless)] == [
        "ConfigMap/?: $.metadata.name: required field is missing"]


def test_unknown_kinds_and_malformed_objects():
    # A kind no module registers (monitoring registers ServiceMonitor once it is used).
    [problem] = validate_manifest({"apiVersion": "example.org/v1", "kind": "Gizmo",
                                   "metadata": {"name": "m"}})
    assert problem.path == "$.kind"
    assert "Gizmo" in problem.message and "register_crd" in problem.message
    [problem] = validate_manifest({"apiVersion": "v1", "kind": "Affinity",
                                   "metadata": {"name": "a"}})
    assert "no schema for kind 'Affinity'" in problem.message  # a sub-schema, not a kind
    assert [p.path for p in validate_manifest({"metadata": {"name": "x"}})] == [
        "$.apiVersion", "$.kind"]
    assert validate_manifest(["not", "a", "mapping"])[0].path == "$"  # type: ignore[arg-type]


def test_kubernetes_version():
    assert validate_manifest(DEPLOYMENT, kubernetes_version="1.31") == []
    assert validate_manifest(DEPLOYMENT, kubernetes_version="v1.32.4") == []
    with pytest.raises(OperationError, match=r"no schemas for Kubernetes 0\.1"):
        validate_manifest(DEPLOYMENT, kubernetes_version="0.1")


def test_registered_crd_schema(crd_registry):
    register_crd_schema("kubeflow.org", "v1", "PyTorchJob", {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "required": ["replicas"], "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "limit": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "quorum": {"type": "object",
                           "anyOf": [{"required": ["min"]}, {"required": ["max"]}],
                           "properties": {"min": {"type": "integer"},
                                          "max": {"type": "integer"}}},
            }},
        },
    })
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "t"},
           "spec": {"replicas": 2, "port": "http", "note": None, "limit": 1,
                    "template": {"anything": {"goes": 1}}, "quorum": {"min": 1}}}
    assert validate_manifest(job) == []
    job["spec"]["port"] = 29500
    assert validate_manifest(job) == []

    bad = copy.deepcopy(job)
    bad["spec"].update(replicas=0, limit=0, port=1.5, quorum={}, extra=True)
    bad["metadata"]["lables"] = {}
    problems = {p.path: p.message for p in validate_manifest(bad)}
    quorum = [path for path in problems if path.startswith("$.spec.quorum.")]
    assert len(quorum) == 1  # anyOf: the closest branch says which field is missing
    assert set(problems) - set(quorum) == {"$.spec.replicas", "$.spec.limit", "$.spec.port",
                                           "$.spec.extra", "$.metadata.lables"}
    assert problems["$.metadata.lables"] == "unknown field 'lables' (did you mean 'labels'?)"

    # Registering again replaces the schema (and the compiled validator).
    register_crd_schema("kubeflow.org", "v1", "PyTorchJob", {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": True})
    assert [p.path for p in validate_manifest(bad)] == ["$.metadata.lables"]


def test_register_crd(crd_registry):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
           "spec": {"group": "monitoring.coreos.com", "names": {"kind": "ServiceMonitor"},
                    "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {
                            "type": "object", "required": ["endpoints"],
                            "properties": {"endpoints": {"type": "array", "items": {
                                "type": "object",
                                "properties": {"port": {"type": "string"}}}}}}}}}}]}}
    assert register_crd(crd) == [("monitoring.coreos.com", "v1", "ServiceMonitor")]
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "m"}, "spec": {"endpoints": [{"port": "http"}]}}
    assert validate_manifest(monitor) == []
    monitor["spec"]["endpoints"][0]["prot"] = "http"
    assert [p.path for p in validate_manifest(monitor)] == ["$.spec.endpoints[0].prot"]
    with pytest.raises(UsageError, match="CustomResourceDefinition"):
        register_crd({"kind": "ConfigMap"})


def test_dask_crd_schemas_are_registered():
    kinds = v.crd_kinds()
    for kind in ("DaskCluster", "DaskWorkerGroup", "DaskJob", "DaskAutoscaler"):
        assert f"{kind} (kubernetes.dask.org/v1)" in kinds
    worker_group = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskWorkerGroup",
                    "metadata": {"name": "demo-gpu"},
                    "spec": {"cluster": "demo", "worker": {"replicas": 1, "spec": {
                        "containers": [{"name": "worker", "image": "ghcr.io/dask/dask"}]}}}}
    assert validate_manifest(worker_group) == []
    del worker_group["spec"]["cluster"]
    assert [p.path for p in validate_manifest(worker_group)] == ["$.spec.cluster"]


def test_dns_names():
    assert dns_label("a-1") == "a-1"
    with pytest.raises(UsageError, match=r"invalid site 'On_Prem'.*\(e\.g\. 'on-prem'\)"):
        dns_label("On_Prem", what="site")
    with pytest.raises(UsageError, match="at most 10"):
        dns_label("a" * 11, max_length=10)
    assert to_dns_label("--GPU nodes (A100)--") == "gpu-nodes-a100"
    long_a, long_b = to_dns_label("a" * 70 + "x"), to_dns_label("a" * 70 + "y")
    assert len(long_a) == 63 and long_a != long_b and dns_label(long_a) == long_a
    with pytest.raises(UsageError, match="at least one letter"):
        to_dns_label("__")
    # Names made from a user's words are valid for every kind, Services included.
    for raw in ("wine.v2", "3wine", "Wine_Model", "9" * 80, "a.b_c-D"):
        made = to_dns_label(raw)
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": made},
                   "spec": {"ports": [{"port": 80}]}}
        assert validate_manifest(service) == [], (raw, made)
    assert to_dns_label("3wine") == "hybridnb-3wine"
    assert validate_manifest({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": "3wine"},
                              "spec": {"ports": [{"port": 80}]}})  # what it used to give


def test_write_manifests(tmp_path):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "certs"},
              "type": "Opaque", "data": {"a": "dg=="}}
    paths = write_manifests([secret, DEPLOYMENT], tmp_path / "out")
    assert [p.name for p in paths] == ["00-secret-certs.yaml", "01-deployment-digits.yaml"]
    assert yaml.safe_load(paths[1].read_text()) == DEPLOYMENT
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]

    bad = copy.deepcopy(DEPLOYMENT)
    bad["spec"]["replicas"] = "many"
    with pytest.raises(ManifestError, match=r"\$\.spec\.replicas"):
        write_manifests([secret, bad], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing written unless all are valid
    assert len(write_manifests([bad], tmp_path / "raw", validate=False)) == 1


def test_a_missing_validator_is_an_error_not_a_pass():
    """Without kubernetes-validate, validating a core kind raises (exit 1 in the CLI)
    saying how to install it; it never returns "no problems"."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['kubernetes_validate'] = None\n"
            "from hybridnb.errors import OperationError\n"
            "from hybridnb.k8s.validate import validate_manifest\n"
            "try:\n"
            "    print('problems:', validate_manifest({'apiVersion': 'v1', 'kind': 'ConfigMap',"
            " 'metadata': {'name': 'c'}}))\n"
            "except OperationError as exc:\n"
            "    print('error:', exc)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("error:") and "pip install" in res.stdout, res.stdout


def test_crd_patterns_in_go_syntax_are_read_as_go_reads_them(crd_registry):
    """RE2 allows flags after '^' (PrometheusRule's partial_response_strategy)."""
    register_crd_schema("example.org", "v1", "Thing", {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "mode": {"type": "string", "pattern": "^(?i)(abort|warn)?$"}}}}})
    thing = {"apiVersion": "example.org/v1", "kind": "Thing", "metadata": {"name": "t"},
             "spec": {"mode": "WARN"}}
    assert validate_manifest(thing) == []
    thing["spec"]["mode"] = "ignore"
    assert [p.path for p in validate_manifest(thing)] == ["$.spec.mode"]


@pytest.mark.parametrize("name", ["hybridnb.k8s", "hybridnb.k8s.validate", "hybridnb.k8s.dask",
                                  "hybridnb.k8s.names", "hybridnb.k8s.problems",
                                  "hybridnb.k8s.crds", "hybridnb.k8s.core_kinds",
                                  "hybridnb.k8s.pods", "hybridnb.k8s.secrets",
                                  "hybridnb.k8s.monitoring"])
def test_doctests(name, hybridnb_home, crd_registry):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
