"""Notebooks headless: ``hybridnb run`` against nbclient, and a sweep against papermill.

- Per-cell overhead: a notebook of trivial cells, run by ``run_notebook`` (papermill with
  hybridnb's engine, parameter checks and records, output written) and by nbclient alone;
  each one's overhead per cell is ``(t(CELLS + 1 cells) - t(1 cell)) / CELLS``, which
  cancels kernel start-up. Target: hybridnb ≤ 1.5× nbclient.
- Sweep: 8 notebooks that each compute for about a second, ``hybridnb.sweep`` with 2 in
  parallel against papermill running them one after another. Target: speed-up ≥ 1.6×.

Each round runs every case once, in alternating order (forwards, then backwards), after
a warm-up round; the figures are medians of the per-round ratios (the ratio of the
medians is reported too). Usage::

    .venv/bin/python benchmarks/bench_notebooks.py [--repeat 9] [--sweep-repeat 5]
                                                  [--cells 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from _report import alternate, report, timed

from hybridnb.testing.notebooks import make_notebook


def rounds(cases: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """One warm-up round, then ``repeat`` rounds, each in the opposite order to the last."""
    alternate(cases, repeat=0, warmup=1)
    raw: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(repeat):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for name, values in alternate({n: cases[n] for n in order}, 1, warmup=0).items():
            raw[name] += values
    return raw


def main(repeat: int = 9, sweep_repeat: int = 5, cells: int = 200) -> None:
    import nbformat
    import papermill as pm
    from nbclient import NotebookClient

    from hybridnb.notebooks.runner import run_notebook
    from hybridnb.notebooks.sweeps import sweep

    tmp = Path(tempfile.mkdtemp(prefix="bench-notebooks-"))
    short = make_notebook(tmp / "short.ipynb", [])
    long = make_notebook(tmp / "long.ipynb", ["y = x + 1"] * cells)
    work = make_notebook(
        tmp / "work.ipynb",
        [
            "import time\nend = time.perf_counter() + 1.0\n"
            "while time.perf_counter() < end:\n    pass"
        ],
        parameters="seed = 0",
    )

    def hybridnb_run(path: Path) -> Callable[[], float]:
        return timed(lambda: run_notebook(path, tmp / f"out-{path.name}", record=False))

    def nbclient_run(path: Path) -> Callable[[], float]:
        return timed(
            lambda: NotebookClient(
                nbformat.read(path, as_version=4), kernel_name="python3"
            ).execute()
        )

    n = cells + 1
    raw = rounds(
        {
            "hybridnb run, 1 cell": hybridnb_run(short),
            f"hybridnb run, {n} cells": hybridnb_run(long),
            "nbclient, 1 cell": nbclient_run(short),
            f"nbclient, {n} cells": nbclient_run(long),
        },
        repeat,
    )

    def sequential() -> None:
        for seed in range(8):
            pm.execute_notebook(
                str(work),
                str(tmp / f"seq-{seed}.ipynb"),
                parameters={"seed": seed},
                progress_bar=False,
            )

    counter = iter(range(1_000_000))
    raw.update(
        rounds(
            {
                "sweep 8, 2 in parallel": timed(
                    lambda: sweep(
                        work,
                        {"seed": list(range(8))},
                        out=tmp / f"sweep-{next(counter)}",
                        parallel=2,
                    )
                ),
                "papermill 8, one by one": timed(sequential),
            },
            sweep_repeat,
        )
    )

    def per_cell(who: str, i: int | None = None) -> float:
        pick = statistics.median if i is None else (lambda v: v[i])
        return (pick(raw[f"{who}, {n} cells"]) - pick(raw[f"{who}, 1 cell"])) / cells

    ratios = [
        per_cell("hybridnb run", i) / max(per_cell("nbclient", i), 1e-9) for i in range(repeat)
    ]
    speedups = [
        p / s
        for p, s in zip(raw["papermill 8, one by one"], raw["sweep 8, 2 in parallel"], strict=True)
    ]
    figures = {
        "hybridnb ms/cell": per_cell("hybridnb run") * 1000,
        "nbclient ms/cell": per_cell("nbclient") * 1000,
        "per-cell ratio": statistics.median(ratios),
        "per-cell ratio (of medians)": per_cell("hybridnb run") / max(per_cell("nbclient"), 1e-9),
        "sweep speed-up": statistics.median(speedups),
        "sweep speed-up (of medians)": statistics.median(raw["papermill 8, one by one"])
        / statistics.median(raw["sweep 8, 2 in parallel"]),
    }
    report("notebooks", raw, figures, {"per-cell ratio": "<= 1.5", "sweep speed-up": ">= 1.6"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds of the per-cell cases")
    parser.add_argument("--sweep-repeat", type=int, default=5, help="rounds of the sweeps")
    parser.add_argument("--cells", type=int, default=200, help="cells of the long notebook")
    args = parser.parse_args()
    main(args.repeat, args.sweep_repeat, args.cells)
