"""hybridnb's 2-rank DDP against a plain torchrun DDP script doing the same work.

Figures: steady-state samples/s (median over steps after warm-up; target ≥ 0.98×), time
to first step from launch (target ≤ +1.5 s), and bf16 against fp32 step time on this CPU
(target ≥ 1.3× where the CPU has native bf16; without it bf16 is emulated and reported).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import alternate, report

HERE = Path(__file__).resolve().parent
EPOCHS, BATCH, RANKS, WARMUP_STEPS = 6, 32, 2, 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _figures(rows: list[dict], start: float) -> tuple[float, float, float]:
    steps = [r for r in rows if r.get("kind", "step") == "step"]
    steady = steps[WARMUP_STEPS:]
    sps = statistics.median(RANKS * BATCH / r["step_seconds"] for r in steady)
    step_s = statistics.median(r["step_seconds"] for r in steady)
    return sps, steps[0]["time"] - start, step_s


def run_hybridnb(precision: str = "fp32") -> tuple[float, float, float]:
    from hybridnb.train import fit
    from hybridnb.train.metrics import read_metrics

    run_dir = tempfile.mkdtemp(prefix="bench-train-")
    spec = {"model": "digits_cnn", "data": {"dataset": "digits"},
            "optimizer": {"name": "adam", "lr": 0.003}, "epochs": EPOCHS, "batch_size": BATCH,
            "precision": precision, "allow_emulated_bf16": precision == "bf16",
            "checkpoint_every": 0}
    start = time.time()
    fit(spec, nprocs=RANKS, run_dir=run_dir, bundle=False)
    return _figures(read_metrics(run_dir), start)


def run_torchrun() -> tuple[float, float, float]:
    out = tempfile.mktemp(suffix=".jsonl")
    start = time.time()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                    str(RANKS), "--rdzv-backend", "c10d",
                    f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
                    str(HERE / "_torchrun_ddp.py"), out, str(EPOCHS), str(BATCH)],
                   check=True, capture_output=True)
    rows = [json.loads(line) for line in Path(out).read_text().splitlines()]
    os.unlink(out)
    return _figures(rows, start)


def main(repeat: int = 3) -> None:
    os.environ.setdefault("HYBRIDNB_HOME", tempfile.mkdtemp(prefix="hybridnb-bench-"))
    results: dict[str, list[tuple[float, float, float]]] = {}

    def case(name, fn):
        def go() -> float:
            results.setdefault(name, []).append(fn())
            return results[name][-1][0]
        return go

    raw = alternate({"torchrun DDP samples/s": case("torchrun", run_torchrun),
                     "hybridnb DDP samples/s": case("hybridnb", run_hybridnb),
                     "hybridnb DDP bf16 samples/s": case("bf16", lambda: run_hybridnb("bf16"))},
                    repeat, warmup=1)
    for name in results:
        results[name] = results[name][1:]  # drop the warm-up round
    med = {k: [statistics.median(v[i] for v in vals) for i in range(3)]
           for k, vals in results.items()}
    raw["torchrun first step s"] = [v[1] for v in results["torchrun"]]
    raw["hybridnb first step s"] = [v[1] for v in results["hybridnb"]]
    figures = {
        "samples/s ratio hybridnb/torchrun": med["hybridnb"][0] / med["torchrun"][0],
        "first step added s": med["hybridnb"][1] - med["torchrun"][1],
        "bf16/fp32 speed-up": med["hybridnb"][2] / med["bf16"][2],
    }
    report("train", raw, figures, {"samples/s ratio hybridnb/torchrun": ">= 0.98",
                                   "first step added s": "<= 1.5",
                                   "bf16/fp32 speed-up": ">= 1.3 with native bf16"},
           unit="mixed")


if __name__ == "__main__":
    main()
