"""Check hybridnb's CUDA paths on a GPU: train with ``hybridnb.train.fit`` (NCCL, fp32,
fp16 with GradScaler, bf16 autocast), bundle, serve on loopback, and ask the endpoint.

Runs anywhere: without a GPU it checks the CPU path (gloo ranks, the same precisions) and says
so. The checks are :func:`hybridnb.train.devicecheck.run_device_check`, the same that
``tests/train/test_gpu.py`` asserts. Prints a table, writes
``build/bench/gpu_check.json``, exits 1 when a check fails.

    python benchmarks/gpu_check.py [--epochs 3] [--precision fp16 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--nprocs", type=int, default=None, help="default: one per GPU, or 2")
    parser.add_argument("--precision", action="append", choices=("fp32", "fp16", "bf16"),
                        help="repeatable; default: every precision the device runs")
    parser.add_argument("--out", type=Path, default=Path("build/bench/gpu_check.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hybridnb-gpu-check-") as tmp:
        # Runs, endpoint logs and records stay in the temporary directory.
        os.environ.setdefault("HYBRIDNB_HOME", str(Path(tmp) / "home"))
        from hybridnb.train.devicecheck import COLUMNS, run_device_check

        report = run_device_check(Path(tmp) / "work", precisions=args.precision,
                                  nprocs=args.nprocs, epochs=args.epochs)
    where = (f"GPU: {report.device_name}" if report.cuda else
             "no GPU: checked the CPU path (gloo ranks); CUDA paths not exercised")
    print(f"{where}, torch {report.torch_version}")
    widths = [max(len(c), *(len(r[i]) for r in report.rows())) for i, c in enumerate(COLUMNS)]
    for row in [COLUMNS, *report.rows()]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    for problem in report.problems:
        print("problem:", problem)
    for path in report.paths:
        if path.note:
            print(f"note ({path.precision}): {path.note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    print(f"{'all checks passed' if report.ok else 'CHECKS FAILED'}; wrote {args.out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
