"""Rendered deployments: Kubernetes manifests, nginx, edge units; the deploy command."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from hybridnb.errors import UsageError
from hybridnb.serve.cache import ResponseCache
from hybridnb.serve.render import edge_unit, kubernetes_manifests, nginx_config

from .conftest import infer_body

#: The fields of the prometheus-operator ServiceMonitor CRD (monitoring.coreos.com/v1)
#: that hybridnb writes, as a structural schema.
SERVICE_MONITOR = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    "spec": {"type": "object", "required": ["selector"], "properties": {
        "selector": {"type": "object", "properties": {
            "matchLabels": {"type": "object",
                            "additionalProperties": {"type": "string"}}}},
        "endpoints": {"type": "array", "items": {"type": "object", "properties": {
            "port": {"type": "string"}, "path": {"type": "string"},
            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$"}}}}}}}}


def test_kubernetes_manifests_are_valid():
    import kubernetes_validate as kv

    objs = kubernetes_manifests("mlp", image="registry.local/hybridnb:1", replicas=3,
                                model_claim="models", host="mlp.example.org",
                                autoscale={"min": 2, "max": 6})
    kinds = {o["kind"]: o for o in objs}
    for obj in objs[:4]:  # the core kinds, with the official schemas (strict)
        kv.validate(obj, "1.30.0", strict=True)
    dep, hpa = kinds["Deployment"], kinds["HorizontalPodAutoscaler"]
    pod = dep["spec"]["template"]["spec"]["containers"][0]
    assert pod["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert pod["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "mlp-token"
    assert dep["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    try:
        from hybridnb.k8s.validate import register_crd_schema, validate_manifest
    except ImportError:
        import jsonschema

        jsonschema.validate(kinds["ServiceMonitor"], SERVICE_MONITOR)
    else:
        register_crd_schema("monitoring.coreos.com", "v1", "ServiceMonitor", SERVICE_MONITOR)
        assert validate_manifest(kinds["ServiceMonitor"]) == []
    with pytest.raises(UsageError):
        kubernetes_manifests("mlp", image="x", replicas=0)


@pytest.mark.parametrize("routing", ["least_connections", "round_robin", "ip_hash"])
def test_nginx_config_passes_nginx_t(tmp_path, routing):
    text = nginx_config(["127.0.0.1:9001", "127.0.0.1:9002"], routing=routing,
                        listen="127.0.0.1:9000", pid=str(tmp_path / "nginx.pid"),
                        error_log=str(tmp_path / "error.log"))
    assert ("least_conn;" in text) == (routing == "least_connections")
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install --no-install-recommends nginx)")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    res = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e",
                          str(tmp_path / "error.log")], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    with pytest.raises(UsageError, match="choose one of"):
        nginx_config(["127.0.0.1:1"], routing="power_of_two")


def test_edge_unit_runs_one_replica():
    unit = edge_unit("/srv/models/mlp", serve_args=["--no-batching"])
    assert "ExecStart=hybridnb serve /srv/models/mlp --host 0.0.0.0 --port 8080 " \
           "--no-batching" in unit
    assert "EnvironmentFile=" in unit and "TOKEN" not in unit.split("EnvironmentFile")[0]


def test_deploy_command_renders(mlp, tmp_path, hybridnb_home):
    from hybridnb.cli.serve import deploy

    app = typer.Typer()
    app.command("deploy")(deploy)
    app.command("noop")(lambda: None)  # keep "deploy" a subcommand
    runner = CliRunner()
    out = runner.invoke(app, ["deploy", str(mlp[1].path), "--render", "kubernetes",
                              "--out", str(tmp_path / "k8s"), "--replicas", "2"])
    assert out.exit_code == 0, out.output
    kinds = [yaml.safe_load(p.read_text())["kind"] for p in sorted((tmp_path / "k8s").iterdir())]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler", "Ingress",
                     "ServiceMonitor"]
    out = runner.invoke(app, ["deploy", str(mlp[1].path), "--render", "nginx", "--out",
                              str(tmp_path / "ngx"), "--upstream", "10.0.0.5:8080"])
    assert out.exit_code == 0 and "10.0.0.5:8080" in (tmp_path / "ngx/nginx.conf").read_text()
    out = runner.invoke(app, ["deploy", str(mlp[1].path), "--render", "helm", "--out",
                              str(tmp_path / "x")])
    assert out.exit_code != 0 and "unknown --render" in str(out.exception)


def test_response_cache(mlp, serve):
    import httpx

    cache = ResponseCache(2)
    xs = [np.full((1, 3), i, np.float32) for i in range(3)]
    for x in xs:
        cache.put(x, x * 2)
    assert cache.get(xs[0]) is None and len(cache) == 2  # evicted, least recently used
    assert cache.get(xs[2]) is not None and not cache.get(xs[2]).flags.writeable
    srv = serve(cache_size=8)
    x = np.ones((1, 8), np.float32)
    with httpx.Client(base_url=srv.url) as c:
        first = c.post("/v2/models/mlp/infer", json=infer_body(x)).json()
        assert c.post("/v2/models/mlp/infer", json=infer_body(x)).json() == first
        text = c.get("/metrics").text
    assert 'hybridnb_endpoint_cache_lookups_total{result="hit"} 1.0' in text
