"""``hybridnb hub render``: the hub's Python config, z2jh values and the service's manifests,
checked against the chart's values schema and the Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

import hybridnb.hub.render as render_mod
from hybridnb.cli import main
from hybridnb.config import check_file
from hybridnb.hub.schema import ValuesError, check_values
from hybridnb.k8s import ManifestError, validate_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "environments" / "hub" / "hybridnb.yaml"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render")
    assert main(["hub", "render", "--team", str(EXAMPLE), "--out", str(out)]) == 0
    return out


def _exec_snippet(path: Path, env: dict[str, str]) -> Config:
    import os

    c = Config()
    old = dict(os.environ)
    os.environ.update(env)
    try:
        exec(compile(path.read_text(), str(path), "exec"), {"get_config": lambda: c})
    finally:
        os.environ.clear()
        os.environ.update(old)
    return c


def test_values_fit_the_z2jh_schema_and_mount_the_team_file(rendered):
    values = yaml.safe_load((rendered / "z2jh-values.yaml").read_text())
    check_values(values)
    single = values["singleuser"]
    assert single["extraFiles"]["hybridnb-team"]["mountPath"] == "/etc/hybridnb/hybridnb.yaml"
    assert single["extraFiles"]["hybridnb-team"]["data"] == yaml.safe_load(EXAMPLE.read_text())
    slugs = [p["slug"] for p in single["profileList"]]
    # research: cluster and gpus × small, large, gpu; clinical: cluster × small.
    assert slugs == sorted(f"{s}-{z}" for s in ("cluster", "gpus")
                           for z in ("small", "large", "gpu"))
    gpu = next(p for p in single["profileList"] if p["slug"] == "gpus-gpu")
    over = gpu["kubespawner_override"]
    assert over["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert over["node_selector"] == {"hybridnb.io/pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} \
        in over["tolerations"]
    assert over["cpu_limit"] == 8 and over["mem_limit"] == "64G" \
        and over["mem_guarantee"] == "32G"
    hub = values["hub"]
    assert hub["services"]["hybridnb"]["url"] == "http://hybridnb-hub-service:10101"
    assert "apiToken" not in hub["services"]["hybridnb"]
    assert "access:services!service=hybridnb" in hub["loadRoles"]["server"]["scopes"]
    assert hub["loadRoles"]["hybridnb-admin"]["users"] == ["carol"]


def test_the_schema_check_can_fail():
    with pytest.raises(ValuesError, match=r"\$\.singleuser\.extraFiles\.x"):
        check_values({"singleuser": {"extraFiles": {"x": {"mountPath": 3}}}})
    with pytest.raises(ValuesError, match="profileLst"):
        check_values({"singleuser": {"profileLst": []}})


def test_the_python_snippet_configures_the_hub_without_a_secret(rendered):
    path = rendered / "jupyterhub_config.d" / "hybridnb.py"
    text = path.read_text()
    c = _exec_snippet(path, {})
    (service,) = c.JupyterHub.services.get_value([])
    assert service["name"] == "hybridnb" and service["command"][:2] == ["hybridnb",
                                                                        "hub-service"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles.get_value([])}
    assert "custom:hybridnb:admin" in roles["hybridnb-admin"]["scopes"]
    assert c.JupyterHub.load_groups.get_value({})["clinical"] == {"users": ["bob"]}
    assert c.Spawner.environment.get_value({})["HYBRIDNB_HUB_SERVICE_URL"] == \
        "http://127.0.0.1:10101/services/hybridnb"
    assert "'api_token':" not in text and "apiToken" not in text  # by reference only

    class User:
        groups = [type("G", (), {"name": "clinical"})()]

    class Kube:  # what group_overrides sees of a KubeSpawner: it has profile_list
        profile_list: list = []
        user = User()

    overrides = c.Spawner.group_overrides(Kube())
    clinical = next(o for o in overrides.values() if o["groups"] == ["clinical"])
    assert sorted(clinical["spawner_override"]["profile_list"]) == ["cluster-small"]
    local = c.Spawner.group_overrides(object())  # a local spawner: limits, no profiles
    assert all("profile_list" not in o["spawner_override"] for o in local.values())
    assert [p["slug"] for p in c.KubeSpawner.profile_list(Kube())] == ["cluster-small"]


def test_an_external_service_reads_its_token_from_the_environment(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["teams"]["service"]["managed"] = False
    team = tmp_path / "team.yaml"
    team.write_text(yaml.safe_dump(data))
    snippet = render_mod.hub_snippet(check_file(team))
    assert "s3cr3t-value" not in snippet
    path = tmp_path / "hybridnb.py"
    path.write_text(snippet)
    c = _exec_snippet(path, {"HYBRIDNB_HUB_SERVICE_TOKEN": "s3cr3t-value"})
    (service,) = c.JupyterHub.services.get_value([])
    assert service["api_token"] == "s3cr3t-value" and "command" not in service


def test_a_secret_in_the_team_file_is_refused(tmp_path, capsys):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["sites"]["local"]["labels"] = {"api_token": "abc123"}
    team = tmp_path / "team.yaml"
    team.write_text(yaml.safe_dump(data))
    assert main(["hub", "render", "--team", str(team), "--out", str(tmp_path / "o")]) == 2
    assert "secret" in capsys.readouterr().err


def test_service_manifests_are_valid_and_take_the_token_from_the_charts_secret(rendered):
    docs = [d for d in yaml.safe_load_all((rendered / "hybridnb-hub-service.yaml").read_text())]
    assert [d["kind"] for d in docs] == ["ConfigMap", "PersistentVolumeClaim", "Deployment",
                                         "Service"]
    for doc in docs:
        assert validate_manifest(doc) == []
    env = docs[2]["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "JUPYTERHUB_API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hub",
                                                  "key": "hub.services.hybridnb.apiToken"}


@pytest.mark.slow
def test_each_profiles_kubespawner_pod_is_a_valid_pod():
    pods = render_mod.check_profile_pods(check_file(EXAMPLE))
    assert sorted(pods) == sorted(
        [f"research/{s}-{z}" for s in ("cluster", "gpus") for z in ("small", "large", "gpu")]
        + ["clinical/cluster-small"])
    pod = pods["research/gpus-gpu"]
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["cpu"] == 4.0
    assert pod["spec"]["nodeSelector"] == {"hybridnb.io/pool": "gpu"}
    assert {"key": "hybridnb.io/pool", "operator": "Equal", "value": "gpu",
            "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HYBRIDNB_PROFILE"] == "gpus-gpu"


@pytest.mark.slow
def test_a_profile_kubernetes_refuses_fails_the_check(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["sites"]["gpus"]["labels"] = {"hybridnb.io/pool": "not a label value!"}
    team = tmp_path / "team.yaml"
    team.write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match="nodeSelector"):
        render_mod.check_profile_pods(check_file(team))
