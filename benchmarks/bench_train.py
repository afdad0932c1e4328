"""hybridnb's 2-rank DDP against a plain torchrun DDP script doing the same work.

Figures, each the median over repetitions of a ratio or difference paired within one
round (rounds alternate which side goes first, after a warm-up round):

- steady-state samples/s, hybridnb / torchrun (target ≥ 0.98): training throughput over
  every step after the first WARMUP_STEPS, from wall time between step ends on rank 0 —
  hybridnb's metrics windows, the peer's per-step times (both evaluate and save a
  checkpoint at each epoch's end, outside the timed steps: the same work, whose
  after-effects on caches and the page cache fall on both);
- time to first step, hybridnb − torchrun (target ≤ +1.5 s): from launch to the end of
  optimizer step 1, both cold: torchrun from its command, hybridnb's ``fit`` in a fresh
  interpreter (a notebook's first training run, before torch is imported);
- the same with ``pin_cpus=False`` (reported): hybridnb's default, ``auto``, gives each
  rank a core of its own when the ranks fill the machine, as here (2 ranks, 2 cores);
  unpinned, both sides are placed by the OS and the figure is the loop's own overhead;
- bf16 / fp32 speed-up of hybridnb's step (target ≥ 1.3 where the CPU has native bf16,
  avx512_bf16 or amx_bf16; elsewhere bf16 is emulated, and the figure is reported as
  measured, with the target marked not applicable).

Each fp32 run trains 60 epochs (1200 steps, about 6 s of steady state on two CPU cores):
with 15 epochs a round's steady state was under 2 s and single rounds ranged from 0.83×
to 1.05× with nothing changed. The bf16 runs, which only give a step-speed ratio, train
a quarter as long.

Run: ``.venv/bin/python benchmarks/bench_train.py [--repeat 7] [--epochs 60]``; writes
``build/bench/train.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _report import report

HERE = Path(__file__).resolve().parent
BATCH, RANKS, WARMUP_STEPS, LOG_EVERY = 32, 2, 20, 10

Run = dict[str, float]  # samples_per_second, first_step_s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steady(windows: list[tuple[int, int, float, float]]) -> float:
    """Samples/s over windows ``(first step, last step, samples, seconds)`` past warm-up."""
    kept = [w for w in windows if w[0] > WARMUP_STEPS]
    if not kept:
        raise SystemExit(f"no steps after the {WARMUP_STEPS} warm-up steps: raise --epochs")
    return sum(w[2] for w in kept) / sum(w[3] for w in kept)


def run_hybridnb(epochs: int, precision: str = "fp32", pin_cpus: bool | str = "auto"
                 ) -> Run:
    """One ``fit`` in a fresh interpreter, as a notebook's first: nothing imported yet.

    (In a process that had trained once already, torch and scikit-learn were loaded and
    the time to first step was flattered by the seconds they take to import.)
    """
    start = time.time()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps([epochs, precision, pin_cpus])],
        capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hybridnb run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"samples_per_second": out["samples_per_second"],
            "first_step_s": out["first_step_time"] - start}


def _child(epochs: int, precision: str, pin_cpus: bool | str) -> None:
    from hybridnb.train import fit
    from hybridnb.train.metrics import read_metrics

    run_dir = tempfile.mkdtemp(prefix="bench-train-")
    spec = {"model": "digits_cnn", "data": {"dataset": "digits"},
            "optimizer": {"name": "adam", "lr": 0.003}, "epochs": epochs, "batch_size": BATCH,
            "precision": precision, "allow_emulated_bf16": precision == "bf16",
            "log_every": LOG_EVERY, "threads": 1, "pin_cpus": pin_cpus}
    try:
        fit(spec, nprocs=RANKS, run_dir=run_dir, bundle=False)
        rows = [r for r in read_metrics(run_dir) if r["kind"] == "step"]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    windows = [(r["step"] - r["window_steps"] + 1, r["step"],
                r["samples_per_second"] * r["window_seconds"], r["window_seconds"])
               for r in rows if r.get("window_steps")]
    first = next(r for r in rows if r["step"] == 1)
    print(json.dumps({"samples_per_second": _steady(windows), "first_step_time": first["time"]}))


def run_torchrun(epochs: int) -> Run:
    fd, out = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    start = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(RANKS),
             "--rdzv-backend", "c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
             str(HERE / "_torchrun_ddp.py"), out, str(epochs), str(BATCH)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"torchrun failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        rows = [json.loads(line) for line in Path(out).read_text().splitlines()]
    finally:
        for path in (out, out + ".checkpoint.pt"):
            Path(path).unlink(missing_ok=True)
    windows = [(r["step"], r["step"], r["samples"], r["seconds"]) for r in rows]
    return {"samples_per_second": _steady(windows), "first_step_s": rows[0]["time"] - start}


def native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes in bf16 natively, and what says so."""
    import torch

    from hybridnb.train.optim import cpu_bf16_flags

    flags = cpu_bf16_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    if flags:
        return True, f"CPU flags {', '.join(flags)} (torch CPU capability {capability})"
    return False, (f"no avx512_bf16/amx_bf16 in /proc/cpuinfo (torch CPU capability "
                   f"{capability}): bf16 is emulated here")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="measured rounds (≥ 5)")
    parser.add_argument("--epochs", type=int, default=60, help="20 steps each")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 runs")
    parser.add_argument("--no-unpinned", action="store_true",
                        help="skip the runs with pin_cpus=False")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one hybridnb run, internal
    args = parser.parse_args(argv)
    if args.child:
        _child(*json.loads(args.child))
        return
    os.environ.setdefault("HYBRIDNB_HOME", tempfile.mkdtemp(prefix="hybridnb-bench-"))
    cases: dict[str, Callable[[], Run]] = {
        "torchrun": lambda: run_torchrun(args.epochs),
        "hybridnb": lambda: run_hybridnb(args.epochs),
    }
    if not args.no_unpinned:
        cases["hybridnb unpinned"] = lambda: run_hybridnb(args.epochs, pin_cpus=False)
    if not args.no_bf16:
        cases["hybridnb bf16"] = lambda: run_hybridnb(max(2, args.epochs // 4), "bf16")
    runs: dict[str, list[Run]] = {name: [] for name in cases}
    for round_ in range(args.repeat + 1):  # round 0 warms caches up and is dropped
        names = list(cases) if round_ % 2 else list(reversed(cases))
        for name in names:
            result = cases[name]()
            if round_:
                runs[name].append(result)
        print(f"round {round_}/{args.repeat}: " + ", ".join(
            f"{n} {runs[n][-1]['samples_per_second']:.0f}/s" for n in cases if round_),
            flush=True)

    def per_round(name: str, key: str) -> list[float]:
        return [r[key] for r in runs[name]]

    sps = {name: per_round(name, "samples_per_second") for name in cases}
    first = {name: per_round(name, "first_step_s") for name in cases}
    ratio = [h / t for h, t in zip(sps["hybridnb"], sps["torchrun"], strict=True)]
    added = [h - t for h, t in zip(first["hybridnb"], first["torchrun"], strict=True)]
    raw = {"torchrun samples/s": sps["torchrun"], "hybridnb samples/s": sps["hybridnb"],
           "torchrun first step s": first["torchrun"],
           "hybridnb first step s": first["hybridnb"],
           "ratio hybridnb/torchrun": ratio, "first step added s": added}
    figures = {"samples/s ratio hybridnb/torchrun": statistics.median(ratio),
               "first step added s": statistics.median(added)}
    targets = {"samples/s ratio hybridnb/torchrun": ">= 0.98", "first step added s": "<= 1.5"}
    if "hybridnb unpinned" in cases:
        unpinned = [u / t for u, t in zip(sps["hybridnb unpinned"], sps["torchrun"],
                                          strict=True)]
        raw["hybridnb unpinned samples/s"] = sps["hybridnb unpinned"]
        raw["ratio hybridnb unpinned/torchrun"] = unpinned
        figures["samples/s ratio hybridnb unpinned/torchrun"] = statistics.median(unpinned)
        targets["samples/s ratio hybridnb unpinned/torchrun"] = (
            "reported: both sides placed by the OS, the loop's own overhead")
    if "hybridnb bf16" in cases:
        native, why = native_bf16()
        speedup = [b / f for b, f in zip(sps["hybridnb bf16"], sps["hybridnb"], strict=True)]
        raw["hybridnb bf16 samples/s"] = sps["hybridnb bf16"]
        raw["bf16/fp32 speed-up"] = speedup
        figures["bf16/fp32 speed-up"] = statistics.median(speedup)
        targets["bf16/fp32 speed-up"] = (">= 1.3 (native bf16: " + why + ")" if native else
                                         "not applicable: " + why + "; measured only")
    report("train", raw, figures, targets, unit="mixed")
    print(f"{platform.processor() or platform.machine()}; {args.repeat} rounds × "
          f"{args.epochs} epochs; medians of per-round ratios")


if __name__ == "__main__":
    main()
