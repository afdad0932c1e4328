"""Pipelines: declarative steps, run in order on any site's cluster, cached, written atomically.

A run (:mod:`hybridnb.data.pipeline_run`) makes as few passes over the data as it can: one per
step that fits statistics, one per checkpoint, and one that writes the shards. Row
counts for the summary ride along with those passes, never a pass of their own.

What is cached, by a hash of the input and of every step's parameters up to it
(:mod:`hybridnb.data.cache`): the output itself (a rerun with nothing changed does no
work and says so), fitted statistics, and the outputs of checkpointed steps
(:mod:`hybridnb.data.checkpoints`), from which a rerun resumes.

>>> from hybridnb.data import Pipeline, load
>>> p = Pipeline([{"split": {"seed": 0}}, {"standard_scale": {}}], name="digits")
>>> [s.name for s in p.steps]
['split', 'standard_scale']
>>> result = p.run(load("digits"), out=tmp / "digits")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, did_you_mean
from .cache import StatsCache, chain
from .checkpoints import Checkpoints
from .dask_dataset import DaskDataset, fingerprint
from .pass_runner import Runner, interactive
from .pipeline_run import PipelineRun
from .shards import MANIFEST, clean_stale, commit, read_manifest, temp_dir
from .step_registry import as_step
from .steps import Step
from .summary import PipelineResult, RunSummary, StepReport

if TYPE_CHECKING:
    from ..config import HybridConfig
    from ..sites import ClusterHandle

logger = logging.getLogger(__name__)



def check_fit_order(steps: Sequence[Step]) -> None:
    """Refuse steps that would learn statistics from rows before the split assigns them.

    Statistics fit after a split come from its ``train`` rows only; fit before it, they
    would also learn from the validation and test rows (a leak), and the model's
    held-out figures would flatter it. Steps that fit nothing from the data (a constant
    fill, fixed clip bounds) may come first.
    """
    names = [s.name for s in steps]
    splits = [i for i, s in enumerate(steps) if s.assigns_splits]
    if not splits:
        return
    early = [i for i, s in enumerate(steps) if s.learns and i < splits[-1]]
    if not early:
        return
    split = next(j for j in splits if j > early[0])
    which = ", ".join(f"{names[i]!r} (step {i + 1})" for i in early)
    verb = "fit" if len(early) > 1 else "fits"
    order = [names[split]] + [n for i, n in enumerate(names) if i != split]
    raise UsageError(f"{which} {verb} statistics before {names[split]!r} (step {split + 1}), "
                     "so they would learn from the validation and test rows too; move the "
                     "split first, and statistics come from the training rows only: "
                     f"{' → '.join(order)}")


@dataclass
class Pipeline:
    """Steps applied in order to a :class:`~hybridnb.data.dask_dataset.DaskDataset`.

    Parameters
    ----------
    steps:
        :class:`~hybridnb.data.steps.Step` objects, plain functions (applied per
        partition), or ``{"name": {parameters}}`` mappings as in YAML.
    name:
        Shown in the summary and recorded in the manifest.
    shard_rows:
        The most samples per shard file. Tensor blocks are rechunked to it; table
        partitions smaller than it are combined and larger ones cut into several
        Parquet files. Default: one shard per chunk or partition (and split).
    checkpoint:
        Steps (names or positions) whose output is saved in the cache, besides those
        checkpointed by default (a shuffle) or marked ``checkpoint=True``.

    Examples
    --------
    >>> Pipeline([{"drop_missing": {}}, {"min_max_scale": {}}]).steps[1].name
    'min_max_scale'
    >>> Pipeline([{"split": {}}], checkpoint=["splt"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: checkpoint: no step 'splt' (did you mean 'split'?)...
    >>> Pipeline([{"standard_scale": {}}, {"split": {}}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: 'standard_scale' (step 1) fits statistics before 'split' (step 2)...
    """

    steps: list[Any] = field(default_factory=list)
    name: str = "pipeline"
    shard_rows: int | None = None
    checkpoint: list[str | int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = [as_step(s) for s in self.steps]
        if self.shard_rows is not None and (not isinstance(self.shard_rows, int)
                                            or self.shard_rows < 1):
            raise UsageError(f"shard_rows must be an integer >= 1, got {self.shard_rows!r}")
        self.checkpoint = list(self.checkpoint)
        self.marked()
        check_fit_order(self.steps)

    def marked(self, extra: Sequence[str | int] = ()) -> set[int]:
        """Positions of the steps whose output is checkpointed in a run."""
        names = [s.name for s in self.steps]
        marks = {i for i, s in enumerate(self.steps) if s.checkpointed}
        for item in [*self.checkpoint, *extra]:
            if isinstance(item, int) and not isinstance(item, bool):
                if not 0 <= item < len(self.steps):
                    raise UsageError(f"checkpoint: step {item} is out of range; the pipeline "
                                     f"has {len(self.steps)} steps")
                marks.add(item)
            elif item in names:
                marks.update(i for i, n in enumerate(names) if n == item)
            else:
                raise UsageError(f"checkpoint: no step {item!r}{did_you_mean(str(item), names)}"
                                 f"; steps: {', '.join(names) or 'none'}")
        return marks

    def keys(self, ds: DaskDataset) -> tuple[list[str], str]:
        """Each step's cache key, and the output's key."""
        keys, key = [], ds.fingerprint or fingerprint(ds.source)
        for step in self.steps:
            key = chain(key, step.token())
            keys.append(key)
        return keys, chain(key, fingerprint("out", self.shard_rows, ds.classification))

    def run(self, dataset: DaskDataset | str, *, out: str | Path,
            cluster: ClusterHandle | None = None, config: HybridConfig | None = None,
            cache_dir: str | Path | None = None, force: bool = False,
            progress: bool | None = None,
            checkpoint: Sequence[str | int] = ()) -> PipelineResult:
        """Run the steps and write shards and a manifest to ``out``.

        Parameters
        ----------
        dataset:
            A dataset, or the name of a configured or built-in one.
        out:
            The output directory. It appears only when complete (atomic rename).
        cluster:
            A cluster handle; work is pinned to workers allowed to hold the dataset's
            classification. ``None`` computes in this process (dask's threads).
        cache_dir:
            Where fitted statistics and checkpoints are cached (default
            ``$HYBRIDNB_HOME/cache/data``). Workers write checkpoints there: on a
            multi-host cluster it must be shared storage, like ``out``.
        force:
            Recompute even when the output is up to date, without resuming from
            checkpoints (they are rewritten); fitted statistics are still reused.
        progress:
            Show progress bars; default: in terminals and notebooks.
        checkpoint:
            More steps (names or positions) to checkpoint in this run.

        Examples
        --------
        >>> Pipeline([{"split": {}}]).run("digits", out=tmp / "d").counts  # doctest: +SKIP
        {'train': 1437, 'validation': 180, 'test': 180}
        """
        start = time.perf_counter()
        if config is None:
            if cluster is not None:
                config = cluster.config
            else:
                from ..config import load_config

                config = load_config()
        if isinstance(dataset, str):
            from .named_datasets import load

            dataset = load(dataset, config=config)
        out = Path(out).expanduser()
        marks = self.marked(checkpoint)
        show = interactive() if progress is None else progress
        runner = Runner(cluster, dataset, config, show)
        keys, final = self.keys(dataset)
        if not force and (out / MANIFEST).is_file():
            try:
                manifest = read_manifest(out)
            except UsageError:
                manifest = {}
            if manifest.get("key") == final:
                logger.info("%s is up to date (key %s): nothing to do", out, final[:12])
                steps = [StepReport(s["name"], "up to date", statistics=s["statistics"],
                                    fit_on=s.get("fit_on")) for s in manifest["steps"]]
                summary = RunSummary(self.name, steps, status="up to date: nothing to do",
                                     out=str(out), counts=dict(manifest["counts"]),
                                     seconds=time.perf_counter() - start)
                return PipelineResult(out, manifest, summary)
        cache = StatsCache(cache_dir)
        clean_stale(out)
        run = PipelineRun(self.name, self.steps, self.shard_rows, dataset, keys, runner, cache,
                          Checkpoints(cache.root), marks, out)
        ds = run.build(resume=not force)
        tmp = temp_dir(out)
        try:
            result = run.write(ds, tmp, final, start)
            commit(tmp, out, result.manifest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        result.path = out
        result.manifest["_root"] = str(out)  # as read_manifest gives it (not on disk)
        result.summary.out = str(out)
        result.summary.seconds = time.perf_counter() - start
        logger.info("wrote %s: %s", out, result.counts)
        return result

    # -- definitions in YAML ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shard_rows": self.shard_rows,
                "checkpoint": list(self.checkpoint),
                "steps": [{s.name: s.params()} for s in self.steps]}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}: {' → '.join(s.name for s in self.steps) or 'no steps'})"

    def _repr_html_(self) -> str:
        items = "".join(f"<li><code>{escape(s.name)}</code> {escape(str(s.params()))}</li>"
                        for s in self.steps)
        return f"<div><b>Pipeline {escape(self.name)}</b><ol>{items}</ol></div>"
