"""``hybridnb plan``: chosen site first, rejected sites with their reasons, exit codes."""

from __future__ import annotations

import json

from hybridnb.cli import main

CONFIG = """
sites:
  local: null
  onprem:
    tier: private
    capacity: {cpu: 8, memory: 64GiB}
    classifications: [public, internal, pii]
  aws:
    tier: public
    backend: scheduler
    scheduler: {address: tls://10.0.0.5:8786}
    capacity: {cpu: 256, memory: 1TiB, gpu: 8}
    cost: {cpu_hour: 0.05, gpu_hour: 3.0, egress_gb: 0.09}
    classifications: [public, internal]
datasets:
  scans: {site: onprem, path: /d/scans, size: 50GB, classification: internal}
  patients: {site: onprem, path: /d/p, size: 5GB, classification: pii}
"""


def test_plan_table_chosen_first_and_rejections(hybridnb_home, capsys):
    (hybridnb_home / "work" / "hybridnb.yaml").write_text(CONFIG)
    args = ["plan", "--kind", "train", "--cpu", "8", "--gpu", "2", "--hours", "3"]
    assert main([*args, "--data", "scans"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "│" in ln]
    assert "aws" in lines[0] and "chosen" in lines[0]
    assert "onprem" in out and "capacity: needs 2 GPU" in out
    assert main([*args, "--data", "scans", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["choices"][0]["site"] == "aws"
    assert data["rejected"][0]["site"] == "onprem"


def test_plan_with_no_feasible_site_exits_2_naming_reasons(hybridnb_home, capsys):
    (hybridnb_home / "work" / "hybridnb.yaml").write_text(CONFIG)
    assert main(["plan", "--kind", "train", "--gpu", "2", "--data", "patients"]) == 2
    captured = capsys.readouterr()
    assert "residency" in captured.out and "residency" in captured.err
    assert main(["plan", "--kind", "trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    assert main(["plan", "--kind", "train", "--data", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
