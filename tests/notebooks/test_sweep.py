"""hybridnb sweep: a grid in parallel on Dask, with a failing and a timed-out run."""

from __future__ import annotations

import gc
import threading

import pandas as pd
import psutil

from hybridnb.cli import main
from hybridnb.notebooks.sweeps import grid_points, parse_grid, sweep
from hybridnb.sites import cluster
from hybridnb.testing.notebooks import make_notebook


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


def test_parallel_runs_keep_their_own_records_and_leak_nothing(hybridnb_home):
    # Runs share the sweep's process (worker threads): each kernel must still get its
    # own record file, and kernels, sockets and threads must all be gone afterwards.
    nb = make_notebook(hybridnb_home / "work" / "seed.ipynb",
                       ["import time, hybridnb\ntime.sleep(0.3)\nhybridnb.record('seed', seed)"],
                       parameters="seed = 0")
    me = psutil.Process()

    def resources():
        gc.collect()
        return me.num_fds(), threading.active_count(), len(me.children(recursive=True))

    # Children of earlier tests in this pytest process are not this sweep's: count new ones.
    before = {p.pid for p in me.children(recursive=True)}
    first = sweep(nb, {"seed": [1, 2, 3, 4]}, out=hybridnb_home / "s1", parallel=2)
    assert first.table["record.seed"].tolist() == first.table["seed"].tolist()
    after_first = resources()
    with cluster("local", n_workers=1, threads_per_worker=2, processes=False) as mine:
        second = sweep(nb, {"seed": [5, 6]}, out=hybridnb_home / "s2", cluster=mine)
        assert mine.client.status == "running"  # a cluster given is the caller's to close
    assert second.table["record.seed"].tolist() == [5, 6]
    assert resources() == after_first
    assert {p.pid for p in me.children(recursive=True)} <= before


def test_sweep_refuses_an_unknown_parameter_before_any_run(notebook, hybridnb_home, capsys):
    out = hybridnb_home / "sweep3"
    code = main(["sweep", str(notebook), "--grid", "lrr=0.1,0.2", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "declares no parameter 'lrr' (did you mean 'lr'?)" in err
    assert not (out / "runs").exists()
    # A fixed -p parameter is checked the same way, and so is every point's type.
    assert main(["sweep", str(notebook), "--grid", "lr=0.1", "-p", "btch", "3",
                 "--out", str(out)]) == 2
    assert "'btch' (did you mean 'batch'?)" in capsys.readouterr().err
    assert main(["sweep", str(notebook), "--grid", "lr=0.1,fast", "--out", str(out)]) == 2
    assert "declared float" in capsys.readouterr().err


def test_sweep_allows_unknown_parameters_when_asked(notebook, hybridnb_home, capsys):
    out = hybridnb_home / "sweep4"
    code = main(["sweep", str(notebook), "--grid", "extra=1,2", "--out", str(out),
                 "--allow-unknown-parameters"])
    assert code == 0
    text = capsys.readouterr().out
    assert "2 runs in" in text and "2 succeeded, 0 failed" in text
    table = pd.read_csv(out / "results.csv")
    assert table["extra"].tolist() == [1, 2] and (table["record.score"] == 3.2).all()


def test_parallel_runs_get_their_own_out_dir(hybridnb_home):
    # A notebook that clears and fills its out_dir, as hybridnb's notebooks do: two runs
    # at once sharing the default would delete each other's files.
    nb = make_notebook(hybridnb_home / "work" / "files.ipynb",
                       ["import pathlib, shutil, time, hybridnb\n"
                        "out = pathlib.Path(out_dir)\nshutil.rmtree(out, ignore_errors=True)\n"
                        "out.mkdir(parents=True)\n(out / 'mine').write_text(str(seed))\n"
                        "time.sleep(1.0)\n"
                        "hybridnb.record('kept', (out / 'mine').read_text() == str(seed))"],
                       parameters="seed = 0\nout_dir = 'build/shared'")
    out = hybridnb_home / "sweep5"
    result = sweep(nb, {"seed": [1, 2]}, out=out, parallel=2)
    assert result.table["record.kept"].tolist() == [True, True]
    dirs = result.table["out_dir"].tolist()
    assert dirs == [str((out / "runs" / f"{i:03d}-seed={i + 1}").resolve()) for i in range(2)]
    assert not (hybridnb_home / "work" / "build").exists()
    # Set by the caller, it is kept as given.
    fixed = sweep(nb, {"seed": [3]}, out=out, parameters={"out_dir": str(out / "mine")})
    assert fixed.table["out_dir"].tolist() == [str(out / "mine")]
