"""Pipeline files: a pipeline, its dataset and output, written in YAML.

>>> spec = load_pipeline("notebooks/pipelines/digits.yaml")  # doctest: +SKIP
>>> spec.pipeline  # doctest: +SKIP
Pipeline('digits': split → standard_scale → augment)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, did_you_mean
from .dask_dataset import DaskDataset
from .pipeline import Pipeline

if TYPE_CHECKING:
    from ..config import HybridConfig


#: Top-level keys of a pipeline file.
FILE_KEYS = ("name", "dataset", "out", "steps", "shard_rows", "checkpoint", "cluster", "site")


@dataclass
class PipelineFile:
    """A pipeline definition read from YAML, with where to read and write."""

    pipeline: Pipeline
    dataset: str | dict[str, Any]
    out: Path
    cluster: dict[str, Any] = field(default_factory=dict)
    site: str | None = None

    def load_dataset(self, config: HybridConfig | None = None) -> DaskDataset:
        from .named_datasets import load

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
    Pipeline('digits': split → standard_scale → augment)
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
                            shard_rows=data.get("shard_rows"),
                            checkpoint=list(data.get("checkpoint") or []))
    except UsageError as exc:
        raise UsageError(f"{str(file)!r}: {exc}") from None
    # Relative to the working directory, like every other path a command takes.
    out = Path(data.get("out") or Path("build") / "data" / pipeline.name).expanduser()
    return PipelineFile(pipeline, data["dataset"], out, dict(data.get("cluster") or {}),
                        data.get("site"))
