"""prometheus-operator's ServiceMonitor and PrometheusRule CRD schemas, shipped with
hybridnb as data with their release, against what hybridnb renders."""

from __future__ import annotations

import copy
from importlib.resources import files

import pytest
import yaml

from hybridnb.k8s.monitoring import service_monitor_manifest
from hybridnb.k8s.validate import crd_kinds, validate_manifest

SCHEMAS = {"ServiceMonitor": "monitoring.coreos.com_servicemonitors.v1.yaml",
           "PrometheusRule": "monitoring.coreos.com_prometheusrules.v1.yaml"}


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_schemas_are_package_data_with_their_source_and_license(kind):
    text = (files("hybridnb.k8s") / "schemas" / SCHEMAS[kind]).read_text()
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    for needed in ("prometheus-operator/prometheus-operator", "tag v0.93.0",
                   "f8fafd475f3d132e239432ae6172de60a6cb6516", "Apache License, Version 2.0",
                   f"example/prometheus-operator-crd/{SCHEMAS[kind].replace('.v1', '')}"):
        assert needed in header, needed
    schema = yaml.safe_load(text)
    # The operator's schema, not one written from hybridnb's fields: it knows far more.
    spec = schema["properties"]["spec"]["properties"]
    if kind == "ServiceMonitor":
        endpoint = spec["endpoints"]["items"]["properties"]
        assert {"tlsConfig", "relabelings", "scrapeTimeout", "authorization"} <= set(endpoint)
    else:
        rule = spec["groups"]["items"]["properties"]["rules"]["items"]["properties"]
        assert {"alert", "record", "expr", "for", "keep_firing_for"} <= set(rule)
    assert f"{kind} (monitoring.coreos.com/v1)" in crd_kinds()


def test_deliberately_wrong_objects_are_reported():
    good = service_monitor_manifest("mlp", namespace="ml", labels={"team": "ml"})
    assert validate_manifest(good) == []
    cases = {
        # a wrong type
        "$.spec.endpoints[0].port": lambda o: o["spec"]["endpoints"][0].update(port=8080),
        # an unknown field: the API server prunes it, strict validation names it
        "$.spec.endpoints[0].pth": lambda o: o["spec"]["endpoints"][0].update(pth="/x"),
        # a value outside the CRD's pattern
        "$.spec.endpoints[0].interval": lambda o: o["spec"]["endpoints"][0].update(
            interval="15 s"),
        # a required field missing
        "$.spec.selector": lambda o: o["spec"].pop("selector"),
        # ObjectMeta: unknown field
        "$.metadata.lables": lambda o: o["metadata"].update(lables={}),
    }
    for path, spoil in cases.items():
        bad = copy.deepcopy(good)
        spoil(bad)
        assert [p.path for p in validate_manifest(bad)] == [path], path
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "r"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0",
                                                         "for": "5m"}]}]}}
    assert validate_manifest(rule) == []
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    rule["spec"]["groups"][0]["name"] = ""  # minLength 1
    assert sorted(p.path for p in validate_manifest(rule)) == [
        "$.spec.groups[0].name", "$.spec.groups[0].rules[0].for"]
