"""Checkpoints and passes, counted by real executions: user steps that log every
non-empty partition they process to a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridnb.data import FunctionStep, Pipeline, load, synthetic_table, verify
from hybridnb.errors import UsageError


def first(df, log, a=1):
    if len(df):  # dask also calls it on an empty frame to learn the columns
        with open(log, "a") as fh:
            fh.write("first\n")
    return df


def second(df, log, factor=1.0):
    if len(df):
        with open(log, "a") as fh:
            fh.write("second\n")
    return df.assign(f0=df["f0"] * factor)


class Log:
    def __init__(self, path: Path):
        self.path = path
        self.seen = 0

    def new(self) -> dict[str, int]:
        """How many partitions each step processed since the last call."""
        lines = self.path.read_text().split() if self.path.exists() else []
        fresh, self.seen = lines[self.seen:], len(lines)
        return {name: fresh.count(name) for name in ("first", "second")}


def _steps(log, *, a=1, factor=1.0, seed=0):
    return [FunctionStep(first, {"log": str(log), "a": a}),
            {"deduplicate": {}},
            FunctionStep(second, {"log": str(log), "factor": factor}),
            {"split": {"seed": seed}}]


def _shards(manifest):
    return {(s["split"], s["index"], s["part"]): s["sha256"] for s in manifest["shards"]}


def test_reruns_resume_from_the_latest_checkpoint(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(2000, 3, seed=0, partitions=4, duplicates=0.1)
    log = Log(tmp_path / "log")
    out = tmp_path / "out"

    def run(steps, **kwargs):
        return Pipeline(steps, name="t").run(ds, out=out, cache_dir=cache, progress=False,
                                             **kwargs)

    first_run = run(_steps(log.path))
    # One pass up to the shuffle's checkpoint, one from it: each step runs once per
    # partition (the row counts for the summary cost no pass of their own).
    assert log.new() == {"first": 4, "second": 4}
    steps = first_run.summary.steps
    assert [s.checkpoint for s in steps[:4]] == ["", "written", "", ""]
    assert steps[1].rows_in == 2000 and 0 < steps[1].dropped < 2000
    assert sum(first_run.counts.values()) == steps[1].rows_out
    assert "checkpoint written" in str(first_run.summary)

    # nothing changed: no step runs, and the summary says so
    again = run(_steps(log.path))
    assert log.new() == {"first": 0, "second": 0}
    assert again.summary.status == "up to date: nothing to do"

    # a step after the checkpoint changed: the steps before it do not run
    changed = run(_steps(log.path, factor=2.0))
    assert log.new() == {"first": 0, "second": 4}
    assert [s.status for s in changed.summary.steps[:2]] == ["from checkpoint"] * 2
    assert changed.summary.steps[1].checkpoint == "read"
    assert "resumed from a checkpoint: first, deduplicate did not run" in str(changed.summary)
    assert changed.summary.steps[1].rows_out == steps[1].rows_out
    assert verify(out) == []

    # the same bytes as a run that starts from scratch (same partitions, same seeds)
    fresh = Pipeline(_steps(log.path, factor=2.0)).run(
        ds, out=tmp_path / "fresh", cache_dir=tmp_path / "other-cache", progress=False)
    log.new()
    assert _shards(fresh.manifest) == _shards(changed.manifest)

    # a step before the checkpoint changed: everything runs
    run(_steps(log.path, a=2))
    assert log.new() == {"first": 4, "second": 4}

    # checkpoint a later step on request: the next change after it runs nothing before
    run(_steps(log.path, a=2, seed=1), checkpoint=["second"])
    assert log.new() == {"first": 0, "second": 4}
    last = run(_steps(log.path, a=2, seed=2))
    assert log.new() == {"first": 0, "second": 0}
    assert [s.status for s in last.summary.steps[:3]] == ["from checkpoint"] * 3

    # force ignores checkpoints (and rewrites them)
    run(_steps(log.path, a=2, seed=2), force=True)
    assert log.new() == {"first": 4, "second": 4}


def test_superseded_and_partial_checkpoints(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(600, 2, seed=0, partitions=3, duplicates=0.2)
    log = Log(tmp_path / "log")
    out = tmp_path / "out"
    for a in (1, 2, 3):
        Pipeline(_steps(log.path, a=a)).run(ds, out=out, cache_dir=cache, progress=False)
    kept = [p for p in (cache / "checkpoints").iterdir() if p.name != "slots"]
    assert len(kept) == 1  # each step of each pipeline keeps its latest checkpoint only
    log.new()
    # a checkpoint without its description (a killed run) is not used
    (kept[0] / "checkpoint.json").unlink()
    Pipeline(_steps(log.path, a=3, factor=3.0)).run(ds, out=out, cache_dir=cache,
                                                    progress=False)
    assert log.new() == {"first": 3, "second": 3}


def test_counts_ride_along_with_the_write(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(1000, 2, seed=0, partitions=5)
    log = Log(tmp_path / "log")
    r = Pipeline([{"split": {}}, {"standard_scale": {}},
                  FunctionStep(second, {"log": str(log.path)})]).run(
        ds, out=tmp_path / "o", cache_dir=cache, progress=False)
    assert log.new()["second"] == 5  # not once more for its row count
    assert r.summary.steps[-2].rows_out == 1000


def test_tensor_checkpoint_resumes_with_the_same_bytes(tmp_path, hybridnb_home, cache):
    aug = {"shift": 1, "rotate": 10, "seed": 0, "copies": 1, "checkpoint": True}
    steps = [{"split": {"seed": 0}}, {"augment": aug}, {"standard_scale": {}}]
    r1 = Pipeline(steps).run(load("digits"), out=tmp_path / "a", cache_dir=cache,
                             progress=False)
    assert r1.summary.steps[1].checkpoint == "written"
    steps[2] = {"min_max_scale": {}}
    r2 = Pipeline(steps).run(load("digits"), out=tmp_path / "b", cache_dir=cache,
                             progress=False)
    assert [s.status for s in r2.summary.steps[:2]] == ["from checkpoint"] * 2
    fresh = Pipeline(steps).run(load("digits"), out=tmp_path / "c",
                                cache_dir=tmp_path / "c2", progress=False)
    assert _shards(r2.manifest) == _shards(fresh.manifest)
    assert r2.counts == fresh.counts and sum(r2.counts.values()) > 1797


def test_checkpoint_names_are_checked():
    with pytest.raises(UsageError, match=r"no step 'splt' \(did you mean 'split'\?\)"):
        Pipeline([{"split": {}}], checkpoint=["splt"])
    with pytest.raises(UsageError, match="step 3 is out of range; the pipeline has 1 steps"):
        Pipeline([{"split": {}}]).marked([3])
    with pytest.raises(UsageError, match="unknown parameter 'checkpont'"):
        Pipeline([{"split": {"checkpont": True}}])
    assert Pipeline([{"deduplicate": {}}, {"split": {}}]).marked() == {0}
    assert Pipeline([{"deduplicate": {"checkpoint": False}}, {"split": {}}]).marked() == set()


@pytest.mark.parametrize(("partitions", "shard_rows"), [(8, 600), (2, 300)])
def test_table_shard_rows(partitions, shard_rows, tmp_path, hybridnb_home, cache):
    ds = synthetic_table(2000, 3, seed=0, partitions=partitions)
    r = Pipeline([{"split": {}}], shard_rows=shard_rows).run(
        ds, out=tmp_path / "t", cache_dir=cache, progress=False)
    rows = [s["rows"] for s in r.manifest["shards"]]
    assert max(rows) <= shard_rows and sum(rows) == 2000
    assert r.manifest["shard_rows"] == shard_rows and verify(tmp_path / "t") == []
    train = [s for s in r.manifest["shards"] if s["split"] == "train"]
    if partitions == 8:  # 250-row partitions are combined: 4 of 500 rows
        assert len(train) == 4
    else:  # 1000-row partitions are cut
        assert len(train) >= 2 * 3 and all(f["files"]["data"].endswith(".parquet")
                                           for f in train)
    loader = r.loader("train", batch_size=64)
    assert sum(len(y) for _, y in loader) == r.counts["train"]
    assert np.isfinite(next(iter(loader))[0].numpy()).all()


def test_a_complete_checkpoint_is_kept_unless_replaced(tmp_path):
    from hybridnb.data.checkpoints import Checkpoints

    store = Checkpoints(tmp_path)

    def commit(marker, **kwargs):
        tmp = store.begin()
        (tmp / "marker").write_text(marker)
        store.commit(tmp, "k", {"kind": "table", "rows": []}, slot="s", **kwargs)

    commit("a")
    commit("b")  # a concurrent run's identical checkpoint: the one in place may be read
    assert (store.path("k") / "marker").read_text() == "a"
    commit("c", replace=True)
    assert (store.path("k") / "marker").read_text() == "c"
    assert store.info("k")["rows"] == []
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".tmp")] == []
