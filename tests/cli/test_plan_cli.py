"""``hybridnb plan``: chosen site first, rejected sites with their reasons, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from hybridnb.cli import main

CONFIG = (Path(__file__).parents[2] / "notebooks" / "config" / "hybrid-sites.yaml").read_text()


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
