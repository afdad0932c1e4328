"""Parameter sweeps: every combination of a grid, run in parallel on a Dask cluster.

Each run executes in its own kernel (papermill starts and shuts one down per run) from a
Dask task, with a timeout and retries; what each run recorded with ``hybridnb.record``
lands in one results table, written as CSV and Parquet. A notebook that declares an
``out_dir`` parameter (as hybridnb's do) gets one per run, ``OUT/runs/NNN-params/``, unless
the grid or the fixed parameters set it: runs at once must not write over each other.

Without ``cluster=``, a sweep starts a local cluster of worker *threads*
(``processes=False``): a task only drives a kernel, which is a process of its own, so
worker processes would add seconds of start-up (each imports Dask, papermill and
hybridnb) and isolate nothing. Pass ``cluster=`` to run the sweep on any other cluster.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from ..sites import ClusterHandle

logger = logging.getLogger(__name__)
T = TypeVar("T")


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid, in a stable order.

    >>> grid_points({"lr": [0.1, 0.01], "batch": [32]})
    [{'lr': 0.1, 'batch': 32}, {'lr': 0.01, 'batch': 32}]
    """
    for name, values in grid.items():
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise UsageError(f"grid {name!r}: give a non-empty list of values, e.g. "
                             f"--grid {name}=1,2")
    names = list(grid)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(grid[n] for n in names))]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["lr=0.1,0.01", "batch=32,64"]`` → ``{"lr": [0.1, 0.01], "batch": [32, 64]}``.

    >>> parse_grid(["lr=0.1,0.01", "opt=adam"])
    {'lr': [0.1, 0.01], 'opt': ['adam']}
    """
    import yaml

    out: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise UsageError(f"--grid {item!r}: expected NAME=V1,V2,…")
        out[name.strip()] = [yaml.safe_load(v) for v in values.split(",")]
    return out


def _slug(params: Mapping[str, Any]) -> str:
    text = "-".join(f"{k}={v}" for k, v in params.items())
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:120]


def _run_one(notebook: str, output: str, params: dict[str, Any], timeout: float | None,
             retries: int, allow_unknown: bool) -> dict[str, Any]:
    """Runs inside a Dask worker: one notebook, retried on failure or timeout."""
    from .runner import run_notebook

    attempts = 0
    while True:
        attempts += 1
        run = _own_event_loop(run_notebook, notebook, output, params, timeout=timeout,
                              record=False, allow_unknown=allow_unknown)
        if run.ok or attempts > retries:
            break
    return {**params, "outcome": run.outcome.value, "attempts": attempts,
            "seconds": round(run.seconds, 3), "error": run.error, "output": str(run.output),
            **{f"record.{k}": v for k, v in run.records.items()}}


def _own_event_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` in a fresh context with an event loop of its own, closed afterwards.

    nbclient runs its coroutines on the event loop that jupyter_core keeps in a context
    variable. Dask copies the submitting context into each task, so two worker threads
    would find the same loop, and the second to use it fails ("This event loop is
    already running"); a fresh context makes jupyter_core start a loop for this run.
    """
    import asyncio
    import contextvars

    from jupyter_core.utils import ensure_event_loop

    def call() -> T:
        loop = ensure_event_loop()  # registers the loop in this (fresh) context
        try:
            return fn(*args, **kwargs)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)

    return contextvars.Context().run(call)


@dataclass
class SweepResult:
    """The results table of a sweep and where it was written."""

    table: pd.DataFrame
    csv: Path
    parquet: Path
    seconds: float

    @property
    def failed(self) -> pd.DataFrame:
        return self.table[self.table["outcome"] != "succeeded"]

    def __repr__(self) -> str:
        n, bad = len(self.table), len(self.failed)
        return (f"<SweepResult {n} runs, {n - bad} succeeded, {bad} failed or timed out, "
                f"{self.seconds:.1f}s → {self.csv}>")

    def _repr_html_(self) -> str:
        return (f"<p>{escape(repr(self))}</p>" + self.table.to_html(index=False))


def sweep(notebook: str | Path, grid: Mapping[str, Sequence[Any]], *, out: str | Path,
          parallel: int = 2, timeout: float | None = None, retries: int = 0,
          parameters: Mapping[str, Any] | None = None,
          cluster: ClusterHandle | None = None, allow_unknown: bool = False) -> SweepResult:
    """Run ``notebook`` for every point of ``grid``, ``parallel`` at a time.

    Parameters
    ----------
    grid:
        Parameter name → values; every combination is one run.
    out:
        Directory for the output notebooks (``runs/``) and ``results.csv``/``.parquet``;
        each run's ``out_dir`` too, when the notebook declares one.
    parallel:
        Runs at once on the sweep's own cluster (ignored with ``cluster=``, whose
        worker threads decide).
    timeout, retries:
        Seconds any one cell may run; how often a failed or timed-out run is retried.
    parameters:
        Fixed parameters of every run.
    cluster:
        Run on this cluster instead of a local one started (and closed) for the sweep.
    allow_unknown:
        Inject grid or fixed parameters the notebook does not declare (logged as
        warnings) instead of refusing the sweep before any run starts.

    Examples
    --------
    >>> res = sweep("notebooks/03_distributed_training.ipynb",         # doctest: +SKIP
    ...             {"lr": [0.1, 0.01], "batch_size": [32, 64]}, out="build/sweep")
    >>> res.table[["lr", "batch_size", "record.accuracy"]]             # doctest: +SKIP
    """
    import pandas as pd
    from distributed import as_completed

    from ..fileio import atomic_write_bytes
    from ..sites import cluster as start_cluster
    from .runner import check_parameters

    src = Path(notebook).resolve()
    if not src.is_file():
        raise UsageError(f"notebook not found: {src}")
    if parallel < 1:
        raise UsageError(f"parallel={parallel}: use 1 or more")
    points = [{**dict(parameters or {}), **p} for p in grid_points(grid)]
    # Bad input fails before any run starts. Every point has the same names, so each
    # unknown one is reported once; each point's values are checked.
    for i, point in enumerate(points):
        for w in check_parameters(src, point, allow_unknown=allow_unknown):
            if i == 0:
                logger.warning(w)
    out_dir = Path(out)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    own = cluster is None
    handle = cluster or start_cluster("local", n_workers=1, threads_per_worker=parallel,
                                      processes=False, name=f"sweep-{src.stem}"[:40])
    runs = [(f"{i:03d}-{_slug(p)}", p) for i, p in enumerate(points)]
    if _declares_out_dir(src) and not any("out_dir" in p for p in points):
        # Runs in parallel must not share the notebook's default output directory.
        runs = [(name, {**p, "out_dir": str((out_dir / "runs" / name).resolve())})
                for name, p in runs]
    rows: list[dict[str, Any]] = []
    try:
        futures = {
            handle.client.submit(_run_one, str(src),
                                 str((out_dir / "runs" / f"{name}.ipynb").resolve()),
                                 p, timeout, retries, allow_unknown, pure=False,
                                 key=f"sweep-run-{i}"): i
            for i, (name, p) in enumerate(runs)}
        for fut in _progress(as_completed(futures, loop=handle.client.loop), len(futures)):
            rows.append({"run": futures[fut], **fut.result()})
    finally:
        if own:
            handle.close()
    table = pd.DataFrame(sorted(rows, key=lambda r: r["run"]))
    csv = atomic_write_bytes(out_dir / "results.csv", table.to_csv(index=False).encode())
    parquet = atomic_write_bytes(out_dir / "results.parquet", table.to_parquet(index=False))
    return SweepResult(table, csv, parquet, time.perf_counter() - start)


def _declares_out_dir(notebook: Path) -> bool:
    from papermill.inspection import inspect_notebook

    return "out_dir" in inspect_notebook(str(notebook))


def _progress(iterable: Any, total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="sweep", unit="run", leave=False)
