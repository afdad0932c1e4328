"""One pipeline run: its passes over the data, row counts, checkpoints and the write.

A run makes as few passes as it can: one per step that fits statistics (unless cached),
one per checkpoint written, and the final one that writes the shards. Row counts for
the summary are queued on the :class:`~hybridnb.data.pass_runner.Runner` and ride along with
the next pass; a checkpoint found in the cache replaces every step up to it.

>>> from hybridnb.data.pipeline_run import INPUT
>>> INPUT
-1
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .cache import StatsCache
from .checkpoints import Checkpoints
from .dask_dataset import DaskDataset, fingerprint
from .manifest import build_manifest
from .pass_runner import Runner
from .shards import check_records, parse_records, table_writes, tensor_writes
from .steps import Step, StepContext
from .summary import PipelineResult, RunSummary, StepReport

logger = logging.getLogger(__name__)

_EMPTY_REDUCTION = ("invalid value encountered|Degrees of freedom|Mean of empty slice|"
                    "All-NaN")
INPUT = -1  # the index of the pipeline's input in row counts


class PipelineRun:
    """One run's state: the reports, the row counts as passes reveal them, checkpoints."""

    def __init__(self, name: str, steps: Sequence[Step], shard_rows: int | None,
                 source: DaskDataset, keys: list[str], runner: Runner, cache: StatsCache,
                 checkpoints: Checkpoints, marks: set[int], out: Path):
        # The pipeline's parts, not the Pipeline: a run needs only these, and the
        # pipeline (which starts runs) stays the one module that knows both.
        self.name, self.steps, self.shard_rows = name, list(steps), shard_rows
        self.source, self.keys = source, keys
        self.runner, self.cache, self.checkpoints = runner, cache, checkpoints
        self.marks, self.out = marks, out
        self.ctx = StepContext(shuffle_method=runner.shuffle_method)
        self.reports: list[StepReport] = []
        self.resume = True

    def build(self, resume: bool) -> DaskDataset:
        """The lazy output: resumed from the latest checkpoint, then the remaining steps.

        ``resume=False`` (a forced run) neither reads nor keeps existing checkpoints.
        """
        self.resume = resume
        steps = self.steps
        ds, first = self.source, 0
        found = self.checkpoints.find(self.keys) if resume else None
        if found is not None:
            j, info = found
            ds = self.checkpoints.load(self.keys[j], info, self.source)
            self.reports = [StepReport(**{**r, "status": "from checkpoint", "seconds": 0.0,
                                          "checkpoint": ""}) for r in info["reports"]]
            self.reports[-1].checkpoint = "read"
            first = j + 1
            logger.info("resuming after step %d (%s) from its checkpoint", j + 1, steps[j].name)
        else:
            self.runner.also(("rows", INPUT), ds.count())
        for i in range(first, len(steps)):
            step, began = steps[i], time.perf_counter()
            step.check(ds)
            stats: dict[str, Any] = {}
            fit_on: dict[str, Any] | None = None
            status = "ran"
            if step.fits:
                hit = self.cache.get(self.keys[i])
                if hit is None or not isinstance(hit.get("statistics"), dict):
                    stats, fit_on = self._fit(i, ds)
                    self.cache.put(self.keys[i], {"statistics": stats, "fit_on": fit_on})
                    status = "fit"
                else:
                    stats, fit_on, status = hit["statistics"], hit.get("fit_on"), "cached"
            ds = step.apply(ds, stats, self.ctx)
            if step.changes_rows:
                self.runner.also(("rows", i), ds.count())
            self.reports.append(StepReport(step.name, status, statistics=stats,
                                           seconds=time.perf_counter() - began,
                                           fit_on=fit_on))
            if i in self.marks:
                ds = self._checkpoint(ds, i)
            self.reports[i].seconds = time.perf_counter() - began
        return self._shape(ds)

    def _fit(self, i: int, ds: DaskDataset) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Step ``i``'s statistics from the rows they may come from, and which those were.

        After a split, the training rows only (no statistic learns from held-out rows);
        the number of rows rides along with the fit's own pass.
        """
        step = self.steps[i]
        split = any(s.assigns_splits for s in self.steps[:i])
        view, rows = ds.fit_view(split)
        key = ("fit rows", i)
        if step.learns:
            self.runner.also(key, rows)
        try:
            with warnings.catch_warnings():
                # An all-NaN column divides 0 by 0 in the reductions; the step then
                # reports it by name (require_values), a clearer message.
                warnings.filterwarnings("ignore", _EMPTY_REDUCTION, RuntimeWarning)
                stats = step.fit(view, self.runner.compute)
        except UsageError:
            if step.learns and self.runner.results.get(key) == 0:
                raise self._no_rows(step.name, split) from None
            raise
        if not step.learns:
            return stats, None
        if key not in self.runner.results:  # a fit that computed nothing: count alone
            self.runner.compute()
        n = int(self.runner.results[key])
        if n == 0:
            raise self._no_rows(step.name, split)
        return stats, {"split": "train" if split else "all", "rows": n}

    def _no_rows(self, step: str, split: bool) -> UsageError:
        where = "the train split is empty" if split else "no rows are left"
        return UsageError(f"step '{step}' of dataset {self.source.name!r} has no rows to "
                          f"fit its statistics on: {where} before it")

    def _checkpoint(self, ds: DaskDataset, i: int) -> DaskDataset:
        """Write step ``i``'s output to the cache in one pass, then read on from it."""
        tmp = self.checkpoints.begin()
        try:
            done = self.runner.compute(*self.checkpoints.writes(ds, tmp))
            self._count()
            info = self.checkpoints.describe(ds, done)
            info.update(step=self.steps[i].name, index=i,
                        reports=[asdict(r) for r in self.reports])
            slot = fingerprint(self.name, str(self.out.resolve()), i)
            self.checkpoints.commit(tmp, self.keys[i], info, slot,
                                    meta=ds.frame._meta if ds.kind == "table" else None,
                                    replace=not self.resume)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.reports[i].checkpoint = "written"
        return self.checkpoints.load(self.keys[i], info, self.source)

    def _count(self) -> None:
        """Fill in the reports' rows from the counts computed so far; stop on emptiness."""
        def known(key: tuple[str, int]) -> int | None:
            value = self.runner.results.get(key)
            return None if value is None else int(value)  # numpy scalars: not JSON

        rows = known(("rows", INPUT))
        for i, report in enumerate(self.reports):
            if report.status == "from checkpoint":
                rows = report.rows_out
                continue
            report.rows_in = rows
            if self.steps[i].changes_rows:
                rows = known(("rows", i))
            report.rows_out = rows
            if report.rows_out == 0:
                raise UsageError(f"dataset {self.source.name!r} is empty after step "
                                 f"'{report.name}'")

    def _latest_rows(self) -> int | None:
        self._count()
        for report in reversed(self.reports):
            if report.rows_out is not None:
                return report.rows_out
        value = self.runner.results.get(("rows", INPUT))
        return None if value is None else int(value)

    def _shape(self, ds: DaskDataset) -> DaskDataset:
        """Blocks or partitions of about ``shard_rows`` samples, whole samples per block."""
        rows = self.shard_rows
        if ds.kind == "table":
            known = self._latest_rows() if rows else None
            if rows and known:
                # Combine neighbouring partitions (no shuffle); the writer cuts what is
                # still larger. The count may predate a step that drops rows: files then
                # hold somewhat fewer rows, never more.
                parts = max(1, math.ceil(known / rows))
                if parts < ds.frame.npartitions:
                    return ds.evolve(frame=ds.frame.repartition(npartitions=parts))
            return ds
        chunks = rows or ds.x.chunks[0]
        return ds.evolve(x=ds.x.rechunk((chunks, *ds.x.shape[1:])), y=ds.y.rechunk((chunks,)),
                         mask=None if ds.mask is None else ds.mask.rechunk((chunks,)))

    def write(self, ds: DaskDataset, tmp: Path, final: str, start: float) -> PipelineResult:
        """Write the shards in one pass (with the pending counts), then the manifest."""
        began = time.perf_counter()
        if ds.kind == "table":
            writes: list[Any] = [table_writes(ds.frame, tmp, self.shard_rows)]
        else:
            writes = tensor_writes(ds.x, ds.y, ds.mask, tmp)
        done = self.runner.compute(*writes)
        records = parse_records(done[0] if ds.kind == "table" else list(done))
        self._count()
        counts = check_records(records, self.source.name)
        written = sum(r["bytes"] for r in records)
        write_seconds = time.perf_counter() - began
        rows = self._latest_rows()
        reports = [*self.reports, StepReport("write shards", "ran", rows,
                                             sum(counts.values()), write_seconds)]
        summary = RunSummary(self.name, reports, status="done", counts=counts,
                             seconds=time.perf_counter() - start, write_seconds=write_seconds,
                             bytes_written=written)
        manifest = build_manifest(self.name, self.steps, self.shard_rows, self.source, ds,
                                  self.keys, final, reports, records, counts, summary)
        return PipelineResult(tmp, manifest, summary)
