"""hybridnb sweep: a grid in parallel on Dask, with a failing and a timed-out run."""

from __future__ import annotations

import pandas as pd
import psutil

from hybridnb.cli import main
from hybridnb.notebooks.sweep import grid_points, parse_grid, sweep


def test_grid_helpers():
    assert parse_grid(["lr=0.1,0.01", "fail=false"]) == {"lr": [0.1, 0.01], "fail": [False]}
    assert len(grid_points({"a": [1, 2], "b": [3, 4, 5]})) == 6


def test_sweep_collects_records_failures_and_timeouts(notebook, hybridnb_home):
    out = hybridnb_home / "sweep"
    result = sweep(notebook, {"lr": [0.1, 1.0], "fail": [False, True]}, out=out, parallel=2,
                   timeout=60, retries=1, parameters={"batch": 10})
    table = result.table.set_index(["lr", "fail"])
    assert table.loc[(1.0, False), "record.score"] == 10.0
    assert table.loc[(0.1, False), "outcome"] == "succeeded"
    assert (table.xs(True, level="fail")["outcome"] == "failed").all()
    assert (table.xs(True, level="fail")["attempts"] == 2).all()  # retried once
    assert pd.read_parquet(result.parquet).shape == result.table.shape
    assert pd.read_csv(result.csv)["outcome"].tolist() == result.table["outcome"].tolist()
    assert len(list((out / "runs").glob("*.ipynb"))) == 4
    assert "2 failed" in repr(result)
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "ipykernel" in " ".join(p.info["cmdline"] or [])
                and "sweep" in " ".join(p.info["cmdline"] or [])]


def test_sweep_cli_with_a_timed_out_run(notebook, hybridnb_home, capsys):
    out = hybridnb_home / "sweep2"
    code = main(["sweep", str(notebook), "--grid", "sleep=0.0,20.0", "--out", str(out),
                 "--timeout", "3", "--parallel", "2"])
    assert code == 1
    text = capsys.readouterr().out
    assert "timeout" in text and "succeeded" in text
    assert (out / "results.csv").exists()
