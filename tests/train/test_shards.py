"""Training from a shard directory prepared by a hybridnb.data pipeline, end to end."""

from __future__ import annotations

import json

import pytest

from hybridnb.data import Pipeline, read_manifest
from hybridnb.errors import UsageError
from hybridnb.train import fit

from .conftest import tiny


@pytest.fixture
def shards(tmp_path, hybridnb_home):
    root = tmp_path / "prepared"
    Pipeline([{"split": {"seed": 0}}, {"standard_scale": {}}], name="digits", shard_rows=400).run(
        "digits", out=root / "digits", cache_dir=root / "cache", progress=False
    )
    return root / "digits"


def test_two_ranks_train_from_shards_and_the_bundle_carries_their_statistics(
    shards, tmp_path, store
):
    manifest = read_manifest(shards)
    assert len(manifest["shards"]) > 1  # the loader really stitches several shards
    spec = tiny(data={"path": str(shards)}, epochs=3, max_steps=40, batch_size=32, log_every=10)
    result = fit(spec, nprocs=2, run_dir=tmp_path / "run", store=store, bundle=True)
    assert result.result["world_size"] == 2 and result.result["steps"] == 40
    # One line per log_every steps, each summing its window: every step counted once.
    steps = [r for r in result.metrics if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 10, 20, 30, 40]
    assert [r["window_steps"] for r in steps] == [1, 9, 10, 10, 10]
    assert all(r["samples_per_second"] > 0 and 0 < r["loss"] < 10 for r in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert result.result["input_shape"] == [1, 8, 8]  # H×W shards get a channel axis
    assert result.accuracy > 0.5  # ten classes: far above chance, so the labels line up

    scale = manifest["steps"][1]
    meta = json.loads((result.bundle / "hybridnb-model.json").read_text())
    pre = meta["preprocessing"]
    assert pre["kind"] == "tensor" and pre["columns"] is None and pre["not_applied"] == []
    assert pre["steps"] == [{"op": "scale", "shift": scale["statistics"]["x"]["mean"],
                             "scale": scale["statistics"]["x"]["std"],
                             "step": "standard_scale", "fit_on": scale["fit_on"]}]
    assert scale["fit_on"] == {"split": "train", "rows": manifest["counts"]["train"]}
    assert meta["labels"] == [str(c) for c in range(10)]
    assert meta["metrics"]["steps"] == 40


def test_a_directory_without_a_manifest_is_refused_before_any_process(tmp_path, store):
    with pytest.raises(UsageError, match=r"not a prepared dataset.*hybridnb data prepare"):
        fit(tiny(data={"path": str(tmp_path)}), nprocs=2, run_dir=tmp_path / "run", store=store)
    assert not (tmp_path / "run").exists()
