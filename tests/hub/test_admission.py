"""The admission every start asks for: nothing outside a hub, clear refusals inside."""

from __future__ import annotations

import os
import stat

import pytest

from hybridnb import team
from hybridnb.cli import main
from hybridnb.config import load_config

from .conftest import free_port


def _team_config(on_outage: str, url: str):
    return load_config(overrides={"teams": {
        "contact": "#ml-platform",
        "service": {"url": url, "on_outage": on_outage},
        "groups": {"g": {"members": ["ann"], "sites": ["local"]}}}})


def test_outside_a_hub_admission_reads_nothing_and_records_nothing(hybridnb_home,
                                                                   monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)

    def no_config():  # outside a hub, not even the configuration is read
        raise AssertionError("admit read the configuration")

    monkeypatch.setattr("hybridnb.team.admission._load_config", no_config)
    lease = team.admit("cluster", "local", {"workers": 2})
    assert lease is team.NO_LEASE and not lease.recorded and lease.ref() is None
    lease.release()


def test_a_hub_without_the_service_admits_locally(hybridnb_home, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    monkeypatch.delenv("HYBRIDNB_HUB_SERVICE_URL", raising=False)
    assert team.admit("run", "local", config=load_config()) is team.NO_LEASE


def test_service_down_refuses_new_starts_clearly(hybridnb_home, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/services/hybridnb"  # nothing listens there
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    with pytest.raises(team.HubUnavailable) as err:
        team.admit("cluster", "local", config=_team_config("refuse", url))
    message = str(err.value)
    assert url in message and "what runs keeps running" in message
    assert "#ml-platform" in message


def test_service_down_with_local_only_allows_local_sites_only(hybridnb_home, monkeypatch,
                                                               caplog):
    url = f"http://127.0.0.1:{free_port()}/services/hybridnb"
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    config = load_config(overrides={
        "sites": {"far": {"backend": "scheduler", "capacity": {"cpu": 1, "memory": 1},
                          "scheduler": {"address": "tls://10.9.9.9:8786"}}},
        "teams": {"service": {"url": url, "on_outage": "local-only"},
                  "groups": {"g": {"members": ["ann"], "sites": ["local", "far"]}}}})
    lease = team.admit("cluster", "local", config=config)
    assert lease.offline and not lease.recorded
    assert "local-only" in caplog.text
    with pytest.raises(team.HubUnavailable, match="Only local sites may start"):
        team.admit("cluster", "far", config=config)


def test_a_cluster_start_in_a_hub_without_its_service_fails_with_exit_1(
        hybridnb_home, monkeypatch, capsys):
    url = f"http://127.0.0.1:{free_port()}/services/hybridnb"
    (hybridnb_home / "etc").mkdir()
    (hybridnb_home / "etc" / "hybridnb.yaml").write_text(
        f"teams:\n  service: {{url: '{url}'}}\n"
        "  groups: {g: {members: [ann], sites: [local]}}\n")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    monkeypatch.setenv("JUPYTERHUB_USER", "ann")
    import hybridnb

    with pytest.raises(team.HubUnavailable):
        hybridnb.cluster("local", n_workers=1, processes=False)
    assert hybridnb.StateStore().list("cluster") == []  # nothing half-started
    assert main(["plan", "notebook"]) in (0, 1, 2)  # the config itself stays usable


def test_endpoint_tokens_are_per_user_and_private(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    tokens = []
    for user in ("alice", "bob"):
        monkeypatch.setenv("HYBRIDNB_HOME", str(tmp_path / user))
        tokens.append(team.endpoint_token())
        assert team.endpoint_token() == tokens[-1]  # made once, then kept
        mode = stat.S_IMODE(os.stat(tmp_path / user / "endpoint-token").st_mode)
        assert mode == 0o600
    assert tokens[0] != tokens[1] and all(len(t) >= 32 for t in tokens)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    assert team.endpoint_token() is None  # outside a hub loopback endpoints may run open


def test_cluster_size():
    assert team.cluster_size(None, None) == {"workers": 1, "cpus": 1}
    assert team.cluster_size(2, 3, (1, 5)) == {"workers": 5, "cpus": 15}
