"""Exports (file_sd, rules, Grafana, Kubernetes objects) and the CLI sub-app."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from hybridnb.cli.monitor import app
from hybridnb.monitor import (
    grafana_dashboard,
    prometheus_rule,
    service_monitor,
    write_exports,
)
from hybridnb.state import Kind, StateStore, Status

from .conftest import EXPOSITION


def _endpoint(url: str, name: str = "mlp") -> None:
    state = StateStore()
    rec = state.add(Kind.endpoint, name, site="local", address=url)
    state.update(rec.id, status=Status.running)


def test_write_exports(hybridnb_home, tmp_path):
    _endpoint("http://127.0.0.1:8123")
    paths = write_exports(tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["grafana-dashboard.json", "kubernetes.yaml", "prometheus.yml",
                     "rules.yml", "targets.json"]
    sd = json.loads((tmp_path / "out" / "targets.json").read_text())
    assert sd == [{"targets": ["127.0.0.1:8123"],
                   "labels": {"job": "hybridnb-endpoint", "name": "mlp"}}]
    config = yaml.safe_load((tmp_path / "out" / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["file_sd_configs"][0]["files"] == ["targets.json"]
    dash = json.loads((tmp_path / "out" / "grafana-dashboard.json").read_text())
    assert len(dash["panels"]) == 8 and all(p["targets"] for p in dash["panels"])


def test_grafana_expressions_are_in_the_checked_subset():
    from hybridnb.monitor.promql import check

    for panel in grafana_dashboard()["panels"]:
        for target in panel["targets"]:
            check(target["expr"])


def test_kubernetes_objects_validate_against_the_operators_crds():
    """ServiceMonitor and PrometheusRule against prometheus-operator's own CRD schemas
    (v0.93.0, shipped in hybridnb/k8s/schemas), not schemas written from our fields."""
    from hybridnb.k8s.validate import validate_manifest

    for obj in (service_monitor("mlp", namespace="ml"), prometheus_rule(namespace="ml")):
        assert validate_manifest(obj) == [], obj
    bad = service_monitor("mlp")
    bad["spec"]["endpoints"][0]["pth"] = "/metrics"  # unknown: the CRD would prune it
    bad["spec"]["endpoints"][0]["interval"] = "15 seconds"  # the CRD's duration pattern
    bad["spec"]["endpoints"][0]["scheme"] = "tcp"  # the CRD's enum
    problems = {p.path: p.message for p in validate_manifest(bad)}
    assert set(problems) == {"$.spec.endpoints[0].pth", "$.spec.endpoints[0].interval",
                             "$.spec.endpoints[0].scheme"}, problems
    assert "unknown field 'pth'" in problems["$.spec.endpoints[0].pth"]
    # Fields hybridnb never writes are known to the real schema (a hand-written one
    # would reject them): TLS settings, relabelings, scrape timeout.
    full = service_monitor("mlp")
    full["spec"]["endpoints"][0].update(
        scheme="https", scrapeTimeout="10s", tlsConfig={"insecureSkipVerify": False},
        relabelings=[{"action": "replace", "targetLabel": "team", "replacement": "ml"}])
    assert validate_manifest(full) == []

    rule = prometheus_rule()
    rule["spec"]["groups"][0]["rules"][0]["for"] = 300  # a duration string, not a number
    rule["spec"]["groups"][0]["rules"][1]["labels"] = {"severity": 2}
    rule["spec"]["groups"][0]["partial_response_strategy"] = "warn"  # Thanos' field
    problems = {p.path: p.message for p in validate_manifest(rule)}
    assert set(problems) == {"$.spec.groups[0].rules[0].for",
                             "$.spec.groups[0].rules[1].labels.severity"}, problems
    assert "is not of type 'string'" in problems["$.spec.groups[0].rules[0].for"]


def test_write_exports_refuses_what_the_operator_would_refuse(hybridnb_home, tmp_path):
    """hybridnb's own duration check takes "1.5m"; Prometheus and the operator's CRD take
    whole numbers only. The real schema catches it; nothing is written."""
    import pytest

    from hybridnb.k8s.validate import ManifestError
    from hybridnb.monitor.alerts import Rule, default_rules

    bad = [*default_rules(), Rule(name="Bad", expr="up == 0", **{"for": "1.5m"})]
    index = len(bad) - 1
    with pytest.raises(ManifestError, match=rf"\$\.spec\.groups\[0\]\.rules\[{index}\]\.for"):
        write_exports(tmp_path / "out", rules=bad, targets=[])
    assert not (tmp_path / "out" / "kubernetes.yaml").exists()


def test_cli_status_and_export(hybridnb_home, metrics_server, closed_port, tmp_path):
    srv = metrics_server(EXPOSITION.format(ok=1, err=0))
    _endpoint(srv.url, "good")
    _endpoint(f"http://127.0.0.1:{closed_port}", "gone")
    runner = CliRunner()
    result = runner.invoke(app, ["--json", "--timeout", "0.5"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    states = {t["name"]: t["up"] for t in data["targets"]}
    assert states == {"good": True, "gone": False}
    table = runner.invoke(app, [])
    assert table.exit_code == 0 and "DOWN" in table.output
    out = runner.invoke(app, ["export", "--out", str(tmp_path / "x")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "x" / "rules.yml").exists()


def test_cli_bad_rules_file_names_the_problem(hybridnb_home, tmp_path):
    rules = tmp_path / "r.yml"
    rules.write_text("rules:\n- name: X\n  expr: up ==\n")
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "o"),
                                      "--rules", str(rules)])
    assert result.exit_code != 0
    assert "invalid expression 'up =='" in str(result.exception)
