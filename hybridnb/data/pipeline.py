"""Pipelines: declarative steps, run in order on any site's cluster, cached, written atomically.

>>> from hybridnb.data import Pipeline, load
>>> p = Pipeline([{"standard_scale": {}}, {"split": {"seed": 0}}], name="digits")
>>> [s.name for s in p.steps]
['standard_scale', 'split']
>>> result = p.run(load("digits"), out=tmp / "digits")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, did_you_mean
from .cache import FORMAT_VERSION, StatsCache, chain
from .dataset import DaskDataset, fingerprint
from .shards import (
    MANIFEST,
    check_records,
    clean_stale,
    commit,
    parse_records,
    read_manifest,
    table_writes,
    temp_dir,
    tensor_writes,
)
from .steps import StepContext, as_step
from .summary import RunSummary, StepReport

if TYPE_CHECKING:
    from ..config import HybridConfig
    from ..sites import ClusterHandle
    from .loader import ShardLoader

logger = logging.getLogger(__name__)

_EMPTY_REDUCTION = ("invalid value encountered|Degrees of freedom|Mean of empty slice|"
                    "All-NaN")


class _Runner:
    """Computes dask objects where the data may go: pinned on a cluster, else locally."""

    def __init__(self, cluster: ClusterHandle | None, ds: DaskDataset, config: HybridConfig,
                 progress: bool):
        self.cluster = cluster
        self.progress = progress
        self.pins: dict[str, Any] = {}
        self.shuffle_method = "tasks"
        if cluster is not None:
            # Raises the clear residency error before any work when no worker qualifies.
            self.pins = cluster.pin(classification=ds.classification)
            need = self.pins.get("resources", {})
            workers = cluster.workers()
            # P2P places output partitions itself, ignoring resource restrictions: use it
            # only when every worker may hold the data.
            if all(all(w.resources.get(k, 0) >= 1 for k in need) for w in workers):
                self.shuffle_method = "p2p"
        else:
            local = config.sites.get("local")
            if local is not None and not local.allows(ds.classification):
                raise UsageError(f"dataset {ds.name!r} is classified {ds.classification} and "
                                 "site 'local' may not hold it; pass cluster= a cluster on an "
                                 "allowed site")

    def compute(self, *objs: Any) -> tuple[Any, ...]:
        lazy = [i for i, o in enumerate(objs) if hasattr(o, "__dask_graph__")]
        values = list(objs)
        if not lazy:
            return tuple(values)
        todo = [objs[i] for i in lazy]
        if self.cluster is not None:
            client = self.cluster.client
            futures = client.compute(todo, **self.pins)
            if self.progress:
                from distributed import progress

                progress(futures)
            done = client.gather(futures)
        else:
            import dask

            if self.progress:
                from dask.diagnostics import ProgressBar

                with ProgressBar():
                    done = dask.compute(*todo)
            else:
                done = dask.compute(*todo)
        for i, value in zip(lazy, done, strict=True):
            values[i] = value
        return tuple(values)


def _interactive() -> bool:
    return sys.stdout.isatty() or "ipykernel" in sys.modules


@dataclass
class PipelineResult:
    """A prepared dataset on disk: where it is, its manifest and the run's summary."""

    path: Path
    manifest: dict[str, Any]
    summary: RunSummary

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest["counts"])

    def loader(self, split: str = "train", **kwargs: Any) -> ShardLoader:
        """A :class:`~hybridnb.data.loader.ShardLoader` over this output's ``split``."""
        from .loader import ShardLoader

        return ShardLoader(self.path, split=split, **kwargs)

    def __repr__(self) -> str:
        return f"<PipelineResult {str(self.path)!r}: {self.summary.status}, {self.counts}>"

    def _repr_html_(self) -> str:
        return (f"<div><b>{escape(str(self.path))}</b> ({escape(self.manifest['kind'])}, "
                f"{escape(self.manifest['classification'])}){self.summary._repr_html_()}</div>")


@dataclass
class Pipeline:
    """Steps applied in order to a :class:`~hybridnb.data.dataset.DaskDataset`.

    Parameters
    ----------
    steps:
        :class:`~hybridnb.data.steps.Step` objects, plain functions (applied per
        partition), or ``{"name": {parameters}}`` mappings as in YAML.
    name:
        Shown in the summary and recorded in the manifest.
    shard_rows:
        Samples per shard for tensor datasets (default: the chunk size); tables write one
        shard per partition.

    Examples
    --------
    >>> Pipeline([{"drop_missing": {}}, {"min_max_scale": {}}]).steps[1].name
    'min_max_scale'
    """

    steps: list[Any] = field(default_factory=list)
    name: str = "pipeline"
    shard_rows: int | None = None

    def __post_init__(self) -> None:
        self.steps = [as_step(s) for s in self.steps]
        if self.shard_rows is not None and self.shard_rows < 1:
            raise UsageError(f"shard_rows must be >= 1, got {self.shard_rows}")

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
            progress: bool | None = None) -> PipelineResult:
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
            Where fitted statistics are cached (default ``$HYBRIDNB_HOME/cache/data``).
        force:
            Recompute even when the output is up to date.
        progress:
            Show progress bars; default: in terminals and notebooks.

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
            from .datasets import load

            dataset = load(dataset, config=config)
        out = Path(out).expanduser()
        show = _interactive() if progress is None else progress
        runner = _Runner(cluster, dataset, config, show)
        ctx = StepContext(shuffle_method=runner.shuffle_method)
        keys, final = self.keys(dataset)
        if not force and (out / MANIFEST).is_file():
            try:
                manifest = read_manifest(out)
            except UsageError:
                manifest = {}
            if manifest.get("key") == final:
                logger.info("%s is up to date (key %s): nothing to do", out, final[:12])
                steps = [StepReport(s["name"], "up to date", statistics=s["statistics"])
                         for s in manifest["steps"]]
                summary = RunSummary(self.name, steps, status="up to date: nothing to do",
                                     out=str(out), counts=dict(manifest["counts"]),
                                     seconds=time.perf_counter() - start)
                return PipelineResult(out, manifest, summary)
        cache = StatsCache(cache_dir)
        clean_stale(out)
        ds, reports, lazy_counts = self._build(dataset, keys, cache, runner, ctx)
        tmp = temp_dir(out)
        try:
            result = self._write(dataset, ds, tmp, runner, reports, lazy_counts, keys, final,
                                 start)
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

    def _build(self, dataset: DaskDataset, keys: list[str], cache: StatsCache,
               runner: _Runner, ctx: StepContext
               ) -> tuple[DaskDataset, list[StepReport], dict[int, Any]]:
        ds = dataset
        reports: list[StepReport] = []
        counts: dict[int, Any] = {}
        for i, (step, key) in enumerate(zip(self.steps, keys, strict=True)):
            began = time.perf_counter()
            step.check(ds)
            stats: dict[str, Any] = {}
            status = "ran"
            if step.fits:
                hit = cache.get(key)
                if hit is None:
                    with warnings.catch_warnings():
                        # An all-NaN column divides 0 by 0 in the reductions; the step
                        # then reports it by name (require_values), a clearer message.
                        warnings.filterwarnings("ignore", _EMPTY_REDUCTION, RuntimeWarning)
                        stats = step.fit(ds, runner.compute)
                    cache.put(key, stats)
                    status = "fit"
                else:
                    stats, status = hit, "cached"
            ds = step.apply(ds, stats, ctx)
            if step.changes_rows:
                counts[i] = ds.count()
            reports.append(StepReport(step.name, status, seconds=time.perf_counter() - began,
                                      statistics=stats))
        if ds.kind == "tensor" and self.shard_rows:
            rows = self.shard_rows
            ds = ds.evolve(x=ds.x.rechunk((rows, *ds.x.shape[1:])), y=ds.y.rechunk(rows),
                           mask=None if ds.mask is None else ds.mask.rechunk(rows))
        elif ds.kind == "tensor":
            # Writing needs whole samples per block: chunk along the first axis only.
            ds = ds.evolve(x=ds.x.rechunk((ds.x.chunks[0], *ds.x.shape[1:])),
                           y=ds.y.rechunk((ds.x.chunks[0],)),
                           mask=None if ds.mask is None else ds.mask.rechunk((ds.x.chunks[0],)))
        return ds, reports, counts

    def _write(self, source: DaskDataset, ds: DaskDataset, tmp: Path, runner: _Runner,
               reports: list[StepReport], lazy_counts: dict[int, Any], keys: list[str],
               final: str, start: float) -> PipelineResult:
        began = time.perf_counter()
        order = list(lazy_counts)
        rows_in = source.count()
        if ds.kind == "table":
            writes: list[Any] = [table_writes(ds.frame, tmp)]
        else:
            writes = tensor_writes(ds.x, ds.y, ds.mask, tmp)
        # One pass: the writes, the input's row count and every step's row count share
        # their reads (dask merges the graphs).
        done = runner.compute(*writes, rows_in, *(lazy_counts[i] for i in order))
        n = len(writes)
        result = done[0] if ds.kind == "table" else list(done[:n])
        records = parse_records(result)
        total_in = int(done[n])
        step_counts = {i: int(v) for i, v in zip(order, done[n + 1:], strict=True)}
        rows = total_in
        for i, report in enumerate(reports):
            report.rows_in = rows
            rows = step_counts.get(i, rows)
            report.rows_out = rows
        empty_after = next((r.name for r in reports if r.rows_out == 0), None)
        if empty_after is not None:
            raise UsageError(f"dataset {source.name!r} is empty after step '{empty_after}'")
        counts = check_records(records, source.name)
        written = sum(r["bytes"] for r in records)
        write_seconds = time.perf_counter() - began
        reports.append(StepReport("write shards", "ran", rows, sum(counts.values()),
                                  write_seconds))
        summary = RunSummary(self.name, reports, status="done", counts=counts,
                             seconds=time.perf_counter() - start, write_seconds=write_seconds,
                             bytes_written=written)
        manifest = {
            "format": "hybridnb-dataset", "version": FORMAT_VERSION, "key": final,
            "pipeline": self.name, "name": source.name, "kind": ds.kind, "site": source.site,
            "classification": source.classification, "source": source.source,
            "fingerprint": source.fingerprint, "schema": ds.describe(), "target": ds.target,
            "steps": [{"name": s.name, "params": s.params(), "key": k,
                       "statistics": r.statistics}
                      for s, k, r in zip(self.steps, keys, reports[:len(keys)], strict=True)],
            "counts": counts, "bytes": written,
            "shards": [{k: v for k, v in r.items() if k != "nonnull"} for r in records],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "summary": summary.to_dict(),
        }
        return PipelineResult(tmp, manifest, summary)

    # -- definitions in YAML ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shard_rows": self.shard_rows,
                "steps": [{s.name: s.params()} for s in self.steps]}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}: {' → '.join(s.name for s in self.steps) or 'no steps'})"

    def _repr_html_(self) -> str:
        items = "".join(f"<li><code>{escape(s.name)}</code> {escape(str(s.params()))}</li>"
                        for s in self.steps)
        return f"<div><b>Pipeline {escape(self.name)}</b><ol>{items}</ol></div>"


#: Top-level keys of a pipeline file.
FILE_KEYS = ("name", "dataset", "out", "steps", "shard_rows", "cluster", "site")


@dataclass
class PipelineFile:
    """A pipeline definition read from YAML, with where to read and write."""

    pipeline: Pipeline
    dataset: str | dict[str, Any]
    out: Path
    cluster: dict[str, Any] = field(default_factory=dict)
    site: str | None = None

    def load_dataset(self, config: HybridConfig | None = None) -> DaskDataset:
        from .datasets import load

        if isinstance(self.dataset, str):
            return load(self.dataset, config=config)
        from .readers import reader_for

        spec = dict(self.dataset)
        fmt = spec.pop("format", "parquet")
        path = spec.pop("path", None)
        if path is None:
            raise UsageError("pipeline file: 'dataset' needs a 'path' (or a dataset name)")
        return reader_for(fmt)(path, **spec)


def load_pipeline(path: str | Path) -> PipelineFile:
    """Read a pipeline file (YAML): ``name``, ``dataset``, ``out``, ``steps``, ….

    >>> load_pipeline("notebooks/pipelines/digits.yaml").pipeline  # doctest: +SKIP
    Pipeline('digits': standard_scale → split → augment)
    """
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise UsageError(f"pipeline file not found: {str(file)!r}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{str(file)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise UsageError(f"{str(file)!r}: a pipeline file is a mapping with keys "
                         f"{', '.join(FILE_KEYS)}")
    for key in data:
        if key not in FILE_KEYS:
            raise UsageError(f"{str(file)!r}: unknown key '{key}'{did_you_mean(key, FILE_KEYS)}"
                             f"; keys: {', '.join(FILE_KEYS)}")
    for key in ("dataset", "steps"):
        if key not in data:
            raise UsageError(f"{str(file)!r}: missing '{key}'")
    steps = data["steps"] or []
    if not isinstance(steps, Sequence) or isinstance(steps, str):
        raise UsageError(f"{str(file)!r}: 'steps' is a list of {{name: {{parameters}}}}")
    try:
        pipeline = Pipeline(list(steps), name=str(data.get("name") or file.stem),
                            shard_rows=data.get("shard_rows"))
    except UsageError as exc:
        raise UsageError(f"{str(file)!r}: {exc}") from None
    # Relative to the working directory, like every other path a command takes.
    out = Path(data.get("out") or Path("build") / "data" / pipeline.name).expanduser()
    return PipelineFile(pipeline, data["dataset"], out, dict(data.get("cluster") or {}),
                        data.get("site"))
