"""Checkpoints are atomic: a process killed while writing leaves a loadable latest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hybridnb.errors import OperationError
from hybridnb.train.checkpoint import latest_checkpoint, load_latest, save_checkpoint

WRITER = """
import sys, torch
from hybridnb.train.checkpoint import save_checkpoint
root = sys.argv[1]
big = torch.randn(2_000_000)
step = 0
while True:
    step += 1
    save_checkpoint(root, step, {"w": big + step, "opt": {0: {"step": torch.tensor(float(step))}},
                                 "pos": {"step": step}, "betas": (0.9, 0.99)}, keep=2)
    print(step, flush=True)
"""


def test_roundtrip_keeps_types_and_prunes(tmp_path):
    import numpy as np
    import torch

    state = {"model": {"a.weight": torch.arange(6.0).reshape(2, 3)},
             "optimizer": {"state": {0: {"step": torch.tensor(3.0)}},
                           "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0]}]},
             "rng": {"numpy": np.random.get_state()}, "scaler": None}
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, state, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000000002",
                                                               "step-000000003"]
    step, loaded = load_latest(tmp_path)
    assert step == 3
    assert torch.equal(loaded["model"]["a.weight"], state["model"]["a.weight"])
    assert loaded["optimizer"]["state"][0]["step"].item() == 3.0
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    np.random.set_state(loaded["rng"]["numpy"])  # numpy accepts it back


def test_no_checkpoint_and_broken_pointer(tmp_path):
    assert load_latest(tmp_path) is None
    (tmp_path / "latest").write_text("step-000000009\n")
    with pytest.raises(OperationError, match="incomplete or missing"):
        latest_checkpoint(tmp_path)


def test_kill_while_writing_never_leaves_an_unloadable_latest(tmp_path):
    root = tmp_path / "ckpt"
    for delay in (0.9, 1.3, 1.7):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()  # one checkpoint exists; now kill it mid-way through more
            time.sleep(delay - 0.8)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        step, state = load_latest(root)
        assert state["pos"]["step"] == step
        assert float(state["w"][0] - state["w"][1]) == pytest.approx(
            float((state["w"] - step)[0] - (state["w"] - step)[1]))
        assert state["opt"][0]["step"].item() == step
