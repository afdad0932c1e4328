"""The ``teams:`` section: validated like the rest (file, line, key path, fix; exit 2),
and a hub user sees only what their groups may use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hybridnb.cli import main
from hybridnb.config import ConfigError, load_config

GOOD = {
    "sites": {"local": {"classifications": ["public", "internal", "pii"],
                        "capacity": {"cpu": 2, "memory": "4GiB"}},
              "edge": {"tier": "edge", "capacity": {"cpu": 1, "memory": "1GiB"}}},
    "datasets": {"patients": {"site": "local", "path": "/p", "classification": "pii"}},
    "teams": {"contact": "#ml", "admins": ["carol"], "groups": {
        "research": {"members": ["alice", "carol"], "sites": ["local", "edge"],
                     "classifications": ["public", "internal"],
                     "per_user": {"clusters": 1}},
        "clinical": {"members": ["bob"], "sites": ["local"],
                     "classifications": ["public", "internal", "pii"]}}},
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _with(**teams) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in teams.items():
        node = data["teams"]
        *parents, last = key.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return data


BAD = [
    ("unknown-group", _with(users={"dave": {"groups": ["reserch"]}}),
     "teams.users.dave.groups.0", "unknown group 'reserch' (did you mean 'research'?)"),
    ("unknown-site", _with(groups__clinical__sites=["local", "gpus"]),
     "teams.groups.clinical.sites.1", "unknown site 'gpus'"),
    ("unknown-classification", _with(groups__clinical__classifications=["pii", "phi"]),
     "teams.groups.clinical.classifications.1", "unknown classification 'phi'"),
    ("negative-quota", _with(groups__research__per_user={"clusters": -1}),
     "teams.groups.research.per_user.clusters", "must be ≥ 0, got -1"),
    ("user-in-no-group", _with(users={"erin": {"per_user": {"clusters": 3}}}),
     "teams.users.erin", "user 'erin' is in no group"),
    ("admin-in-no-group", _with(admins=["mallory"]),
     "teams.admins.0", "admin 'mallory' is in no group"),
]


@pytest.mark.parametrize("case, data, key, message", BAD, ids=[b[0] for b in BAD])
def test_bad_team_config_names_file_line_key_and_fix(tmp_path, hybridnb_home, capsys, case,
                                                     data, key, message):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problem = next(p for p in err.value.problems if p.path == key)
    assert message in problem.message and problem.fix
    assert problem.source == str(path) and problem.line is not None
    assert main(["sites", "validate", str(path)]) == 2
    out = capsys.readouterr()
    assert f"{path}:{problem.line}: {key}:" in out.err and "Fix:" in out.err


def test_bad_team_file_makes_render_exit_2(tmp_path, hybridnb_home, capsys):
    path = _write(tmp_path, _with(groups__clinical__sites=["nowhere"]))
    assert main(["hub", "render", "--team", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "unknown site 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_hub_user_sees_only_their_groups_sites_and_classifications(tmp_path, hybridnb_home,
                                                                      monkeypatch):
    path = _write(tmp_path, GOOD)
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    bob = load_config(path)
    assert list(bob.sites) == ["local"] and bob.site("local").allows("pii")
    assert list(bob.datasets) == ["patients"]
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    alice = load_config(path)
    assert sorted(alice.sites) == ["edge", "local"] and not alice.site("local").allows("pii")
    monkeypatch.setenv("JUPYTERHUB_USER", "zed")  # in no group: nothing to use
    assert load_config(path).sites == {}
    monkeypatch.delenv("JUPYTERHUB_USER")  # outside a hub: everything, as configured
    assert sorted(load_config(path).sites) == ["edge", "local"]
    assert load_config(path).site("local").allows("pii")


def test_plan_refuses_pii_for_research_and_allows_it_for_clinical(tmp_path, hybridnb_home):
    path = _write(tmp_path, GOOD)
    code = ("import json, sys, hybridnb\n"
            "try:\n"
            "    p = hybridnb.plan('notebook', cpu=1, data=['patients'])\n"
            "    print(json.dumps(p.chosen.site if p.chosen else None))\n"
            "except hybridnb.UsageError as e:\n"
            "    print(json.dumps('refused: ' + str(e)))\n")
    out = {}
    for user in ("alice", "bob"):
        env = {"HOME": str(hybridnb_home / "home"), "HYBRIDNB_SYSTEM_CONFIG": str(path),
               "JUPYTERHUB_USER": user, "PYTHONPATH": str(Path(__file__).parents[2]),
               "PATH": "/usr/bin:/bin"}
        out[user] = subprocess.run([sys.executable, "-c", code], env=env, text=True,
                                   capture_output=True, check=True).stdout.strip()
    assert out["bob"] == '"local"'
    assert out["alice"] == "null", out  # no site alice may use holds pii
