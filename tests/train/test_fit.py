"""Real training runs: elastic agent, gloo process groups, DDP and FSDP2, restarts."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from hybridnb.errors import OperationError, UsageError
from hybridnb.state import StateStore, Status
from hybridnb.train import TrainResult, fit
from hybridnb.train.checkpoint import load_latest
from hybridnb.train.loop import ENV_FAULT

from .conftest import tiny

# 2 ranks × 9 steps, a checkpoint every 3 steps: the reference the restarts must match.
REFERENCE = tiny(max_steps=9, checkpoint_every=3)


def max_diff(a: TrainResult, b: TrainResult) -> float:
    wa, wb = a.state_dict(), b.state_dict()
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    return fit(REFERENCE, nprocs=2, run_dir=root / "run", store=StateStore(root / "s.db"),
               bundle=True)


def test_ddp_run_records_metrics_checkpoints_and_bundle(reference):
    run = reference.run_dir
    assert reference.result["steps"] == 9 and reference.result["world_size"] == 2
    assert 0.0 <= reference.accuracy <= 1.0
    steps = [r["step"] for r in reference.metrics if r["kind"] == "step"]
    assert steps == list(range(1, 10))
    assert all(r["samples_per_second"] > 0 and r["step_seconds"] > 0 and r["lr"] == 0.003
               for r in reference.metrics if r["kind"] == "step")
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000000009"
    assert {p.name for p in (run / "logs").glob("rank*.log")} == {"rank0.log", "rank1.log"}
    assert "hybridnb_train_loss" in (run / "metrics.prom").read_text()
    meta = json.loads((reference.bundle / "hybridnb-model.json").read_text())
    assert meta["metrics"]["spec_hash"] == reference.result["spec_hash"]
    assert "test accuracy" in repr(reference) and "<table>" in reference._repr_html_()
    store = StateStore(run.parent / "s.db")
    rec = store.get(reference.record_id)
    assert rec.status is Status.succeeded and rec.spec["result"]["steps"] == 9
    # While it ran, its gauges were served at the recorded address; now that is closed.
    assert rec.address and rec.address.startswith("http://127.0.0.1:")
    with pytest.raises(OSError):
        urllib.request.urlopen(rec.address + "/metrics", timeout=5)


def test_gradient_accumulation_matches_a_larger_batch(reference, tmp_path, store):
    # Two micro-batches of 16 are the same samples as the reference's batches of 32.
    big = fit(tiny(max_steps=9, batch_size=32), nprocs=2, run_dir=tmp_path / "big",
              store=store, bundle=False)
    accum = fit(tiny(max_steps=9, batch_size=16, grad_accum=2), nprocs=2,
                run_dir=tmp_path / "acc", store=store, bundle=False)
    assert max_diff(big, accum) <= 1e-5
    assert max_diff(big, reference) > 1e-3  # a different batch size really differs


def test_sigkill_of_a_rank_restarts_and_matches_the_undisturbed_run(reference, tmp_path,
                                                                    store, monkeypatch):
    monkeypatch.setenv(ENV_FAULT, "1:5")  # rank 1 dies after step 5; checkpoint at 3
    result = fit({**REFERENCE, "max_restarts": 1}, nprocs=2, run_dir=tmp_path / "run",
                 store=store, bundle=False)
    assert (tmp_path / "run" / ".fault-rank1-step5").exists()
    assert result.result["attempt"] == 1
    assert max_diff(result, reference) <= 1e-6


def test_without_restarts_the_failure_names_the_rank_and_resume_finishes(
        reference, tmp_path, store, monkeypatch):
    monkeypatch.setenv(ENV_FAULT, "1:5")
    start = time.monotonic()
    with pytest.raises(OperationError) as info:
        fit(REFERENCE, nprocs=2, run_dir=tmp_path / "run", store=store)
    assert time.monotonic() - start < 60
    text = str(info.value)
    assert "rank 1" in text and "SIGKILL" in text and "rank1.log" in text
    [rec] = store.list()
    assert rec.status is Status.failed and "rank 1" in rec.error
    with pytest.raises(UsageError, match="already holds checkpoints"):
        fit(REFERENCE, nprocs=2, run_dir=tmp_path / "run", store=store)
    resumed = fit(REFERENCE, nprocs=2, run_dir=tmp_path / "run", store=store, resume=True,
                  bundle=False)  # the marker file keeps the fault from firing again
    assert max_diff(resumed, reference) <= 1e-6


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="pinning 2 ranks to a core each needs 2 usable cores")
def test_pinned_ranks_get_a_core_each_and_train_the_same(reference, tmp_path, store):
    result = fit({**REFERENCE, "pin_cpus": True}, nprocs=2, run_dir=tmp_path / "run",
                 store=store)
    cores = sorted(os.sched_getaffinity(0))
    for rank in (0, 1):
        log = (result.run_dir / "logs" / f"rank{rank}.log").read_text()
        assert f"rank {rank} pinned to CPUs [{cores[rank]}]" in log
    assert max_diff(result, reference) == 0.0  # where a rank runs changes no arithmetic


def test_auto_pins_only_ranks_that_fill_the_machine(reference):
    # The reference run: 2 ranks × 1 thread, pin_cpus left at "auto".
    fills = len(os.sched_getaffinity(0)) == 2
    for rank in (0, 1):
        log = (reference.run_dir / "logs" / f"rank{rank}.log").read_text()
        assert ("pinned to CPUs" in log) == fills


def test_fsdp_with_bf16_autocast(tmp_path, store):
    result = fit(tiny(strategy="fsdp", precision="bf16", allow_emulated_bf16=True,
                      optimizer={"name": "adamw", "lr": 0.003, "weight_decay": 0.01},
                      schedule={"name": "cosine", "warmup_steps": 2}, max_steps=4,
                      checkpoint_every=2),
                 nprocs=2, run_dir=tmp_path / "run", store=store, bundle=False)
    assert result.result["precision"] == "bf16" and result.result["strategy"] == "fsdp"
    lrs = [r["lr"] for r in result.metrics if r["kind"] == "step"]
    assert lrs[0] < lrs[1] and lrs[-1] < 0.003  # warm-up, then cosine decay
    assert result.state_dict()["0.weight"].shape == (16, 1, 3, 3)  # gathered, not a shard


def test_single_process_fp16_with_grad_scaler(tmp_path, store):
    result = fit(tiny(strategy="single", precision="fp16", max_steps=3, checkpoint_every=3,
                      optimizer={"name": "rmsprop", "lr": 0.001}), nprocs=1,
                 run_dir=tmp_path / "run", store=store, bundle=False)
    assert result.result["precision"] == "fp16" and result.result["world_size"] == 1
    _, state = load_latest(tmp_path / "run" / "checkpoints")
    assert state["scaler"]["scale"] > 0  # GradScaler state is checkpointed


@pytest.mark.slow
def test_digits_cnn_reaches_97_percent(tmp_path, store):
    start = time.monotonic()
    result = fit({"name": "digits-cnn", "model": "digits_cnn", "data": "digits",
                  "epochs": 20, "batch_size": 32, "seed": 0,
                  "optimizer": {"name": "adam", "lr": 0.003},
                  "schedule": {"name": "cosine", "warmup_steps": 10}},
                 nprocs=2, run_dir=tmp_path / "run", store=store)
    assert result.accuracy >= 0.97, result
    assert result.bundle is not None
    assert time.monotonic() - start < 90


def test_dask_launcher_restarts_a_killed_rank_and_matches(reference, tmp_path, store,
                                                          monkeypatch):
    import hybridnb

    monkeypatch.setenv(ENV_FAULT, "1:5")
    with hybridnb.cluster("local", n_workers=2, threads_per_worker=1, store=store) as c:
        result = fit({**REFERENCE, "max_restarts": 1}, nprocs=2, launcher="dask", cluster=c,
                     run_dir=tmp_path / "run", store=store, bundle=False)
        assert result.launcher == "dask" and result.result["attempt"] == 1
        assert max_diff(result, reference) <= 1e-6
        assert c.client.submit(sum, [1, 2]).result() == 3  # the workers survived
