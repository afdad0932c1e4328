"""Child processes (notebook kernels, workers) resolve the configuration the command did."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from hybridnb.config.handoff import config_for_children

CHILD = ("import json, hybridnb; c = hybridnb.load_config(); "
         "print(json.dumps({'cpu': c.site('local').capacity.cpu, 'sites': sorted(c.sites)}))")


def child_view() -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True, env=os.environ.copy()).stdout
    return json.loads(out)


def test_env_file_then_config_files_then_set_values_reach_a_child(hybridnb_home, monkeypatch):
    env_file = hybridnb_home / "env.yaml"
    env_file.write_text("sites:\n  edge1: {tier: edge, capacity: {cpu: 1, memory: 1GiB}}\n"
                        "  local: {capacity: {cpu: 5}}\n")
    team = hybridnb_home / "team.yaml"
    team.write_text("sites:\n  local: {capacity: {cpu: 7}}\n")
    monkeypatch.setenv("HYBRIDNB_CONFIG", str(env_file))
    assert child_view()["cpu"] == 5                       # the env layer alone

    with config_for_children([team], {}) as path:
        assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert child_view() == {"cpu": 7, "sites": ["edge1", "local"]}  # file over env
    with config_for_children([team], {"sites.local.capacity.cpu": 3}) as path:
        assert child_view()["cpu"] == 3                   # --set over every file
    assert not path.exists() and os.environ["HYBRIDNB_CONFIG"] == str(env_file)


def test_nothing_explicit_changes_nothing(hybridnb_home):
    with config_for_children([], {}) as path:
        assert path is None and "HYBRIDNB_CONFIG" not in os.environ
    assert child_view()["sites"] == ["local"]
