"""Notebooks headless: ``hybridnb run`` against nbclient, and a sweep against papermill.

- Per-cell overhead: a notebook of trivial cells, run by ``run_notebook`` (papermill with
  parameter checks and records) and by nbclient alone; overhead per cell is
  ``(t(41 cells) - t(1 cell)) / 40`` of each (target: hybridnb ≤ 1.5× nbclient).
- Sweep: 8 notebooks that each compute for about a second, ``hybridnb.sweep`` with 2 in
  parallel against papermill one after another (target: speed-up ≥ 1.6×).

Cases alternate after warm-up, as every benchmark here does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
from _report import alternate, report, timed

CELLS = 40


def make(path: Path, cells: list[str], parameters: str = "x = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)
    return path


def main(repeat: int = 3) -> None:
    import papermill as pm
    from nbclient import NotebookClient

    from hybridnb.notebooks.runner import run_notebook
    from hybridnb.notebooks.sweep import sweep

    tmp = Path(tempfile.mkdtemp(prefix="bench-notebooks-"))
    short = make(tmp / "short.ipynb", [])
    long = make(tmp / "long.ipynb", ["y = x + 1"] * CELLS)
    work = make(tmp / "work.ipynb", ["import time\nend = time.perf_counter() + 1.0\n"
                                     "while time.perf_counter() < end:\n    pass"],
                "seed = 0")

    def hybridnb_run(path: Path):
        return timed(lambda: run_notebook(path, tmp / f"out-{path.name}", record=False))

    def nbclient_run(path: Path):
        return timed(lambda: NotebookClient(nbformat.read(path, as_version=4),
                                            kernel_name="python3").execute())

    raw = alternate({"hybridnb run, 1 cell": hybridnb_run(short),
                     f"hybridnb run, {CELLS + 1} cells": hybridnb_run(long),
                     "nbclient, 1 cell": nbclient_run(short),
                     f"nbclient, {CELLS + 1} cells": nbclient_run(long)}, repeat, warmup=1)

    def sequential() -> None:
        for seed in range(8):
            pm.execute_notebook(str(work), str(tmp / f"seq-{seed}.ipynb"),
                                parameters={"seed": seed}, progress_bar=False)

    counter = iter(range(1_000_000))
    raw.update(alternate({
        "sweep 8, 2 in parallel": timed(lambda: sweep(work, {"seed": list(range(8))},
                                                      out=tmp / f"sweep-{next(counter)}",
                                                      parallel=2)),
        "papermill 8, one by one": timed(sequential)}, repeat, warmup=1))
    med = {k: sorted(v)[len(v) // 2] for k, v in raw.items()}
    ours = (med[f"hybridnb run, {CELLS + 1} cells"] - med["hybridnb run, 1 cell"]) / CELLS
    peer = (med[f"nbclient, {CELLS + 1} cells"] - med["nbclient, 1 cell"]) / CELLS
    figures = {"hybridnb ms/cell": ours * 1000, "nbclient ms/cell": peer * 1000,
               "per-cell ratio": ours / max(peer, 1e-9),
               "sweep speed-up": med["papermill 8, one by one"]
               / med["sweep 8, 2 in parallel"]}
    report("notebooks", raw, figures, {"per-cell ratio": "<= 1.5", "sweep speed-up": ">= 1.6"})


if __name__ == "__main__":
    main()
