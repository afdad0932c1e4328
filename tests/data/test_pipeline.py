"""Pipelines end to end: shards and manifest, atomic output, caching, summary, clusters,
residency and reproducibility across worker counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hybridnb
from hybridnb.data import Pipeline, load, load_pipeline, read_manifest, synthetic_table, verify
from hybridnb.errors import UsageError
from tests.sites.conftest import two_site_config

DIGITS = [{"split": {"seed": 0}}, {"standard_scale": {}},
          {"augment": {"shift": 1, "rotate": 10, "flip": True, "noise": 0.05, "seed": 0}}]


def test_digits_shards_and_manifest(tmp_path, hybridnb_home, cache):
    r = Pipeline(DIGITS, name="digits", shard_rows=500).run(
        "digits", out=tmp_path / "d", cache_dir=cache, progress=False)
    m = read_manifest(tmp_path / "d")
    assert m["counts"] == r.counts and sum(m["counts"].values()) == 1797
    assert set(m["counts"]) == {"train", "validation", "test"}
    assert m["classification"] == "public" and m["site"] == "local"
    assert m["schema"] == {"kind": "tensor", "x": {"shape": [8, 8], "dtype": "float32"},
                           "y": {"dtype": "int64"}}
    assert [s["name"] for s in m["steps"]] == ["split", "standard_scale", "augment"]
    # fit on the training split only, as the manifest says
    train = m["counts"]["train"]
    assert m["steps"][1]["statistics"]["x"]["count"] == train * 64
    assert m["steps"][1]["fit_on"] == {"split": "train", "rows": train}
    assert m["steps"][0]["fit_on"] is None
    assert verify(tmp_path / "d") == []
    assert max(s["rows"] for s in m["shards"]) <= 500
    x = np.load(tmp_path / "d" / m["shards"][0]["files"]["x"])
    assert x.dtype == np.float32 and x.shape[1:] == (8, 8)
    # a corrupted shard is detected
    f = tmp_path / "d" / m["shards"][0]["files"]["y"]
    f.write_bytes(f.read_bytes()[:-8] + b"\0" * 8)
    assert verify(tmp_path / "d") == [m["shards"][0]["files"]["y"]]
    text = str(r.summary)
    assert "standard_scale" in text and "write shards" in text
    assert "<table>" in r.summary._repr_html_() and "<table>" in r._repr_html_()
    assert "augment" in Pipeline(DIGITS)._repr_html_()


def test_caching_rerun_and_changed_step(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(2000, 3, seed=0, partitions=2, missing=0.01)
    steps = [{"split": {}}, {"fill_missing": {}}, {"standard_scale": {}},
             {"clip_outliers": {"sigma": 3}}]
    out = tmp_path / "t"
    first = Pipeline(steps).run(ds, out=out, cache_dir=cache, progress=False)
    assert [s.status for s in first.summary.steps] == ["ran", "fit", "fit", "fit",
                                                       "ran"]
    stamp = (out / "manifest.json").stat().st_mtime_ns
    again = Pipeline(steps).run(ds, out=out, cache_dir=cache, progress=False)
    assert again.summary.status == "up to date: nothing to do"
    assert {s.status for s in again.summary.steps} == {"up to date"}
    assert again.summary.steps[2].fit_on == first.summary.steps[2].fit_on
    assert first.summary.steps[2].fit_on == {"split": "train", "rows": first.counts["train"]}
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # nothing was written
    # change the last step: the two before reuse their statistics, the last is refit
    steps[3] = {"clip_outliers": {"sigma": 2}}
    changed = Pipeline(steps).run(ds, out=out, cache_dir=cache, progress=False)
    assert [s.status for s in changed.summary.steps][:4] == ["ran", "cached", "cached", "fit"]
    manifest = read_manifest(out)
    assert manifest["steps"][3]["params"]["sigma"] == 2
    # cached statistics keep the record of the rows they were fit on
    assert manifest["steps"][2]["fit_on"] == {"split": "train", "rows": manifest["counts"]["train"]}
    # force recomputes everything that is not cached statistics
    forced = Pipeline(steps).run(ds, out=out, cache_dir=cache, force=True, progress=False)
    assert forced.summary.status == "done"


def _explode(df):
    # Partition 0 (rows labelled with a small f0) may be written before another fails.
    if len(df) and df["f0"].iloc[0] > -1.0:
        raise RuntimeError("interrupted")
    return df


def test_interrupted_run_leaves_no_finished_looking_output(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(400, 2, seed=0, partitions=4)
    out = tmp_path / "t"
    good = Pipeline([{"split": {}}]).run(ds, out=out, cache_dir=cache, progress=False)
    with pytest.raises(RuntimeError, match="interrupted"):
        Pipeline([{"split": {}}, _explode]).run(ds, out=out, cache_dir=cache, progress=False)
    # the previous output is intact, and no temporary directory is left
    assert read_manifest(out)["key"] == good.manifest["key"] and verify(out) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    with pytest.raises(RuntimeError):
        Pipeline([_explode]).run(ds, out=tmp_path / "fresh", cache_dir=cache, progress=False)
    assert not (tmp_path / "fresh").exists()
    # a stale temporary directory of a killed run is cleaned by the next run
    stale = tmp_path / ".tmp-t-deadbeef"
    (stale / "train").mkdir(parents=True)
    Pipeline([{"split": {}}]).run(ds, out=out, cache_dir=cache, force=True, progress=False)
    assert not stale.exists()


def test_empty_after_steps_is_an_error(tmp_path, hybridnb_home, cache):
    ds = synthetic_table(100, 2, seed=0, partitions=2, missing=0.9)
    with pytest.raises(UsageError, match="empty after step 'drop_missing'"):
        Pipeline([{"drop_missing": {}}]).run(ds, out=tmp_path / "e", cache_dir=cache,
                                             progress=False)
    assert not (tmp_path / "e").exists()


def test_pipeline_file(tmp_path, hybridnb_home):
    f = tmp_path / "p.yaml"
    f.write_text("name: d\ndataset: digits\nout: out/d\nsteps:\n  - split: {seed: 1}\n")
    spec = load_pipeline(f)
    assert spec.pipeline.name == "d" and spec.dataset == "digits"
    assert spec.load_dataset().name == "digits"
    f.write_text("dataset: digits\nstep: []\n")
    with pytest.raises(UsageError, match=r"unknown key 'step' \(did you mean 'steps'\?\)"):
        load_pipeline(f)
    f.write_text("dataset: digits\nsteps:\n  - split: {tset: 0.1}\n")
    with pytest.raises(UsageError, match=r"p.yaml.*unknown parameter 'tset' \(did you mean "
                                         r"'test'\?\)"):
        load_pipeline(f)
    with pytest.raises(UsageError, match="not found"):
        load_pipeline(tmp_path / "none.yaml")


def test_example_pipeline_file_is_valid(hybridnb_home):
    from pathlib import Path

    spec = load_pipeline(Path(__file__).parents[2] / "notebooks" / "pipelines" / "digits.yaml")
    assert [s.name for s in spec.pipeline.steps][-1] == "augment"


def test_run_on_a_cluster_is_pinned(tmp_path, local_cluster, cache):
    r = Pipeline(DIGITS).run(load("digits"), cluster=local_cluster, out=tmp_path / "d",
                             cache_dir=cache, progress=False)
    assert sum(r.counts.values()) == 1797


def _where(df):
    from distributed import get_worker

    # Dask calls it once on an empty frame, outside any worker, to learn the columns.
    return df.assign(worker=get_worker().address if len(df) else "")


def test_pii_runs_only_on_allowed_sites(tmp_path, hybridnb_home, store, cache):
    config = two_site_config()
    ds = synthetic_table(600, 2, seed=0, partitions=6, classification="pii", name="patients")
    with hybridnb.hybrid_cluster(["onprem", "cloud"], n_workers={"onprem": 1, "cloud": 1},
                                 config=config, store=store) as c:
        c.wait_for_workers(2)
        by_site = {w.address: w.site for w in c.workers()}
        r = Pipeline([{"split": {}}, {"standard_scale": {}}, _where]).run(
            ds, cluster=c, out=tmp_path / "p", cache_dir=cache, progress=False)
        import pandas as pd

        workers = pd.concat(pd.read_parquet(p) for p in (tmp_path / "p").rglob("*.parquet"))
        assert {by_site[w] for w in workers["worker"]} == {"onprem"}
    assert r.manifest["classification"] == "pii"
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["classification"] == "pii"


def test_pii_without_allowed_worker_fails_before_work(tmp_path, hybridnb_home, store, cache):
    config = two_site_config()
    ds = synthetic_table(100, 2, classification="pii", name="patients")
    with hybridnb.hybrid_cluster(["cloud"], n_workers=1, scheduler_site="cloud",
                                 config=config, store=store) as c, \
            pytest.raises(UsageError, match=r"may process data classified pii"):
        Pipeline([{"standard_scale": {}}]).run(ds, cluster=c, out=tmp_path / "p",
                                               cache_dir=cache, progress=False)
    assert not (tmp_path / "p").exists() and not cache.exists()


def _shas(manifest):
    return {(s["split"], s["index"]): s["sha256"] for s in manifest["shards"]}


def test_augmentation_is_reproducible_on_1_and_3_workers(tmp_path, store, cache):
    steps = [{"split": {"seed": 3}},
             {"augment": {"shift": 2, "rotate": 20, "flip": True, "noise": 0.1, "seed": 5,
                          "copies": 1}}]
    shas = []
    for n in (1, 3):
        with hybridnb.cluster("local", n_workers=n, threads_per_worker=1, processes=False,
                              store=store) as c:
            r = Pipeline(steps).run(load("digits"), cluster=c, out=tmp_path / f"w{n}",
                                    cache_dir=cache, progress=False)
            shas.append(_shas(r.manifest))
    assert shas[0] == shas[1]
    # and a different seed gives different bytes
    r = Pipeline([steps[0], {"augment": {**steps[1]["augment"], "seed": 6}}]).run(
        load("digits"), out=tmp_path / "other", cache_dir=cache, progress=False)
    assert _shas(r.manifest) != shas[0]
