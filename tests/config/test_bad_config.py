"""Every kind of bad configuration: one message per problem, naming file, key path and fix,
and exit code 2 from the CLI."""

from __future__ import annotations

import textwrap

import pytest

from hybridnb.cli import main
from hybridnb.config import ConfigError, check_file, load_config

GOOD_ONPREM = """
sites:
  onprem:
    tier: private
    backend: ssh
    ssh: {hosts: [10.0.0.11]}
    capacity: {cpu: 32, memory: 128GiB}
    classifications: [public, internal, pii]
"""

CASES = {
    # name: (yaml, key path, line, words in message)
    "unknown key": (
        """
        sites:
          onprem:
            tier: private
            capacity: {cpu: 4, memory: 8GiB}
            clasifications: [public]
        """, "sites.onprem.clasifications", 6, ["unknown key", "did you mean 'classifications'"]),
    "unknown top-level key": (
        """
        sties: {}
        """, "sties", 2, ["unknown key 'sties'", "did you mean 'sites'"]),
    "wrong type": (
        """
        sites:
          onprem:
            capacity:
              cpu: lots
              memory: 8GiB
        """, "sites.onprem.capacity.cpu", 5, ["expected a number", "'lots'"]),
    "negative capacity": (
        """
        sites:
          onprem:
            capacity:
              cpu: -8
              memory: 8GiB
        """, "sites.onprem.capacity.cpu", 5, ["must be ≥ 0", "-8"]),
    "negative memory": (
        """
        sites:
          onprem:
            capacity: {cpu: 1, memory: -5GiB}
        """, "sites.onprem.capacity.memory", 4, ["size"]),
    "unknown backend": (
        """
        sites:
          onprem:
            backend: slurmm
            capacity: {cpu: 1, memory: 1GiB}
        """, "sites.onprem.backend", 4, ["unknown backend 'slurmm'", "local, scheduler, ssh"]),
    "backend without options": (
        """
        sites:
          cloud:
            tier: public
            backend: scheduler
            capacity: {cpu: 1, memory: 1GiB}
        """, "sites.cloud.scheduler", 5, ["needs its options", "address"]),
    "bad scheduler address": (
        """
        sites:
          cloud:
            backend: scheduler
            scheduler: {address: 10.0.0.5:8786}
            capacity: {cpu: 1, memory: 1GiB}
        """, "sites.cloud.scheduler.address", 5, ["invalid value", "tls://"]),
    "unknown tier": (
        """
        sites:
          onprem:
            tier: privat
            capacity: {cpu: 1, memory: 1GiB}
        """, "sites.onprem.tier", 4, ["'privat'", "'private', 'public' or 'edge'"]),
    "missing capacity": (
        """
        sites:
          onprem:
            tier: private
        """, "sites.onprem.capacity", 3, ["required key 'capacity' is missing"]),
    "dataset on unknown site": (
        GOOD_ONPREM + textwrap.dedent("""
        datasets:
          scans: {site: onprme, path: /data/scans, classification: internal}
        """), "datasets.scans.site", 11, ["unknown site 'onprme'", "did you mean 'onprem'"]),
    "classification not allowed on site": (
        GOOD_ONPREM + textwrap.dedent("""
          cloud:
            tier: public
            backend: local
            capacity: {cpu: 4, memory: 16GiB}
        datasets:
          patients: {site: cloud, path: s3://b/p, classification: pii}
        """), "datasets.patients.classification", 15,
        ["classified 'pii'", "site 'cloud' may hold only public",
         "sites.cloud.classifications"]),
    "unknown classification": (
        GOOD_ONPREM + textwrap.dedent("""
        datasets:
          scans: {site: onprem, path: /d, classification: secrett}
        """), "datasets.scans.classification", 11, ["unknown classification 'secrett'"]),
    "invalid site name": (
        """
        sites:
          On_Prem:
            capacity: {cpu: 1, memory: 1GiB}
        """, "sites.On_Prem", 3, ["invalid site name", "lowercase"]),
    "link to unknown site": (
        """
        sites:
          onprem:
            capacity: {cpu: 1, memory: 1GiB}
            network: {to: {awss: {bandwidth_mbps: 100}}}
        """, "sites.onprem.network.to.awss", 5, ["unknown site 'awss'"]),
    "invalid YAML": (
        """
        sites:
          onprem:
            tier: private
           capacity: {cpu: 1
        """, "", 5, ["invalid YAML"]),
    "duplicate key": (
        """
        sites:
          onprem:
            capacity: {cpu: 1, memory: 1GiB}
            tier: private
            tier: public
        """, "sites.onprem.tier", 6, ["key given twice"]),
    "top level not a mapping": (
        """
        - sites
        """, "", 2, ["top level must be a mapping"]),
}


def _write(tmp_path, text):
    path = tmp_path / "hybridnb.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_problem_names_file_line_and_key(case, hybridnb_home):
    text, key, line, words = CASES[case]
    path = _write(hybridnb_home / "work", text)
    with pytest.raises(ConfigError) as info:
        load_config()
    matching = [p for p in info.value.problems if p.path == key]
    assert matching, f"no problem at {key!r}: {info.value}"
    problem = matching[0]
    assert problem.source == str(path)
    assert problem.line == line, str(problem)
    message = str(problem)
    for word in words:
        assert word in message, message
    assert "Fix:" in message


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_exits_2_without_traceback(case, hybridnb_home, capsys):
    text, key, _, _ = CASES[case]
    path = _write(hybridnb_home / "work", text)
    assert main(["sites", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key in err
    assert "Traceback" not in err
    # Loaded as the project layer, every command refuses it the same way.
    assert main(["sites", "list"]) == 2


def test_all_problems_reported_at_once(hybridnb_home):
    path = _write(hybridnb_home / "work", """
        sites:
          onprem:
            tier: privat
            backend: sshh
            capacity: {cpu: -1, memory: 1GiB}
        datasets:
          d: {site: nowhere, path: /x}
        """)
    with pytest.raises(ConfigError) as info:
        check_file(path)
    paths = {p.path for p in info.value.problems}
    assert {"sites.onprem.tier", "sites.onprem.backend", "sites.onprem.capacity.cpu",
            "datasets.d.site"} <= paths


def test_problem_in_override_names_arguments(hybridnb_home):
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"sites.local.capacity.cpu": -2})
    (problem,) = info.value.problems
    assert problem.source == "arguments" and problem.path == "sites.local.capacity.cpu"


def test_cli_set_override_error_exits_2(hybridnb_home, capsys):
    assert main(["--set", "sites.local.capacity.cpu=-3", "sites", "list"]) == 2
    assert "arguments: sites.local.capacity.cpu" in capsys.readouterr().err
    assert main(["--set", "novalue", "sites", "list"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_good_file_validates(hybridnb_home, capsys):
    path = _write(hybridnb_home / "work", GOOD_ONPREM)
    assert main(["sites", "validate", str(path)]) == 0
    assert "ok: 2 site(s)" in capsys.readouterr().out
