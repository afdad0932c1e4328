"""Layered configuration: order, merge, provenance."""

from __future__ import annotations

import os

import pytest

from hybridnb.config import ConfigError, load_config


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


SITE = """
sites:
  onprem:
    tier: private
    backend: local
    capacity: {{cpu: {cpu}, memory: 64GiB}}
"""


def test_builtin_default_is_one_local_site(hybridnb_home):
    config = load_config()
    assert list(config.sites) == ["local"]
    local = config.site("local")
    assert local.backend == "local" and local.tier == "private"
    assert local.capacity.cpu == os.cpu_count()
    assert local.allows("pii")
    assert config.layers == ["built-in default"]
    assert config.source_of("sites.local.capacity.cpu") == "built-in default"


def test_layers_apply_low_to_high_and_remember_sources(hybridnb_home, monkeypatch):
    system = write(hybridnb_home / "etc" / "hybridnb.yaml", SITE.format(cpu=8))
    user = write(hybridnb_home / "home" / ".config" / "hybridnb" / "hybridnb.yaml",
                 "sites:\n  onprem:\n    labels: {team: vision}\n")
    project = write(hybridnb_home / "work" / "hybridnb.yaml",
                    "sites:\n  onprem:\n    capacity: {cpu: 16}\n")
    env = write(hybridnb_home / "env.yaml", "policies:\n  placement: cheapest\n")
    monkeypatch.setenv("HYBRIDNB_CONFIG", str(env))
    extra = write(hybridnb_home / "extra.yaml", "sites:\n  onprem:\n    preemptible: true\n")

    config = load_config(extra, overrides={"sites.onprem.capacity.gpu": 2})

    onprem = config.site("onprem")
    assert onprem.capacity.cpu == 16  # project beats system
    assert onprem.capacity.memory == 64 * 2**30  # from system, merged key by key
    assert onprem.labels == {"team": "vision"}
    assert onprem.preemptible is True
    assert onprem.capacity.gpu == 2
    assert config.policies.placement == "cheapest"
    assert config.source_of("sites.onprem.capacity.cpu") == f"{project}:3"
    assert config.source_of("sites.onprem.capacity.memory") == f"{system}:6"
    assert config.source_of("sites.onprem.labels.team") == f"{user}:3"
    assert config.source_of("policies.placement") == f"$HYBRIDNB_CONFIG ({env}):2"
    assert config.source_of("sites.onprem.preemptible") == f"{extra}:3"
    assert config.source_of("sites.onprem.capacity.gpu") == "arguments"
    assert config.layers == ["built-in default", str(system), str(user), str(project),
                             f"$HYBRIDNB_CONFIG ({env})", str(extra), "arguments"]


def test_xdg_config_home_is_honoured(hybridnb_home, monkeypatch):
    xdg = hybridnb_home / "xdg"
    write(xdg / "hybridnb" / "hybridnb.yaml", SITE.format(cpu=3))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert load_config().site("onprem").capacity.cpu == 3


def test_a_list_replaces_the_lower_list(hybridnb_home):
    write(hybridnb_home / "work" / "hybridnb.yaml",
          "sites:\n  local:\n    classifications: [public]\n")
    assert load_config().site("local").classifications == ["public"]


def test_missing_hybridnb_config_file_is_an_error(hybridnb_home, monkeypatch):
    monkeypatch.setenv("HYBRIDNB_CONFIG", str(hybridnb_home / "nope.yaml"))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "nope.yaml" in str(info.value) and "file not found" in str(info.value)


def test_tls_defaults_on_outside_private_tier(hybridnb_home):
    config = load_config(overrides={"sites": {
        "cloud": {"tier": "public", "backend": "scheduler",
                  "scheduler": {"address": "tls://10.1.2.3:8786"},
                  "capacity": {"cpu": 8, "memory": "32GiB"}},
        "plain": {"tier": "public", "backend": "scheduler", "tls": False,
                  "scheduler": {"address": "tcp://10.1.2.4:8786"},
                  "capacity": {"cpu": 8, "memory": "32GiB"}}}})
    assert config.site("cloud").tls is True
    assert config.site("plain").tls is False
    assert config.site("local").tls is False


def test_network_links(hybridnb_home):
    config = load_config(overrides={"sites": {"local": {"network": {
        "bandwidth_mbps": 100, "to": {"local": {"bandwidth_mbps": 5, "latency_ms": 40}}}}}})
    net = config.site("local").network
    assert net.link_to("local").bandwidth_mbps == 5
    assert net.link_to("elsewhere").bandwidth_mbps == 100


def test_unknown_site_and_dataset_lookups_explain(hybridnb_home):
    config = load_config()
    with pytest.raises(ValueError, match="unknown site 'locl' \\(did you mean 'local'\\?\\)"):
        config.site("locl")
    with pytest.raises(ValueError, match=r"unknown dataset 'x'.*none"):
        config.dataset("x")


def test_repr_and_html(hybridnb_home):
    config = load_config()
    assert "local" in repr(config)
    assert repr(config.site("local")).startswith("Site('local', tier=private")
    html = config._repr_html_()
    assert "<table>" in html and "local" in html


def test_null_removes_a_site_set_below(hybridnb_home):
    write(hybridnb_home / "etc" / "hybridnb.yaml", SITE.format(cpu=8))
    write(hybridnb_home / "work" / "hybridnb.yaml", "sites:\n  local: null\n")
    config = load_config()
    assert list(config.sites) == ["onprem"]
    assert not any(k.startswith("sites.local") for k in config.sources)
    # null for a plain value keeps meaning "unset" (here: TLS by tier)
    assert load_config(overrides={"sites.onprem.tls": None}).site("onprem").tls is False
