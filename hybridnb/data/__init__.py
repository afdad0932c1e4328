"""Datasets and preprocessing pipelines on Dask, from a laptop to a hybrid cluster.

Importing this package is cheap: names resolve on first use (PEP 562), so Dask, pandas
and torch load only when a dataset, pipeline or loader is built.

>>> from hybridnb import data
>>> ds = data.load("digits")
>>> ds.classification
'public'
>>> p = data.Pipeline([{"split": {"seed": 0}}, {"standard_scale": {}}], name="digits")
>>> p
Pipeline('digits': split → standard_scale)
"""

# The TYPE_CHECKING imports below are for type checkers only; _LAZY is the API.
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_LAZY = {
    "DaskDataset": "hybridnb.data.dask_dataset:DaskDataset",
    "SPLITS": "hybridnb.data.dask_dataset:SPLITS",
    "load": "hybridnb.data.named_datasets:load",
    "digits": "hybridnb.data.named_datasets:digits",
    "synthetic_images": "hybridnb.data.named_datasets:synthetic_images",
    "synthetic_table": "hybridnb.data.named_datasets:synthetic_table",
    "write_synthetic_parquet": "hybridnb.data.named_datasets:write_synthetic_parquet",
    "read_parquet": "hybridnb.data.readers:read_parquet",
    "read_csv": "hybridnb.data.readers:read_csv",
    "read_npy": "hybridnb.data.readers:read_npy",
    "read_zarr": "hybridnb.data.readers:read_zarr",
    "read_images": "hybridnb.data.readers:read_images",
    "Step": "hybridnb.data.steps:Step",
    "DropMissing": "hybridnb.data.cleaning:DropMissing",
    "FillMissing": "hybridnb.data.cleaning:FillMissing",
    "Deduplicate": "hybridnb.data.cleaning:Deduplicate",
    "ClipOutliers": "hybridnb.data.cleaning:ClipOutliers",
    "CheckSchema": "hybridnb.data.cleaning:CheckSchema",
    "FunctionStep": "hybridnb.data.steps:FunctionStep",
    "register_step": "hybridnb.data.step_registry:register_step",
    "known_steps": "hybridnb.data.step_registry:known_steps",
    "MinMaxScale": "hybridnb.data.transforms:MinMaxScale",
    "StandardScale": "hybridnb.data.transforms:StandardScale",
    "Split": "hybridnb.data.transforms:Split",
    "Augment": "hybridnb.data.transforms:Augment",
    "TableNoise": "hybridnb.data.transforms:TableNoise",
    "transform": "hybridnb.data.transforms:transform",
    "Pipeline": "hybridnb.data.pipeline:Pipeline",
    "PipelineResult": "hybridnb.data.summary:PipelineResult",
    "load_pipeline": "hybridnb.data.pipeline_file:load_pipeline",
    "read_manifest": "hybridnb.data.shards:read_manifest",
    "verify": "hybridnb.data.shards:verify",
    "ShardLoader": "hybridnb.data.loader:ShardLoader",
    "RunSummary": "hybridnb.data.summary:RunSummary",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .cleaning import CheckSchema, ClipOutliers, Deduplicate, DropMissing, FillMissing
    from .dask_dataset import SPLITS, DaskDataset
    from .loader import ShardLoader
    from .named_datasets import (
        digits,
        load,
        synthetic_images,
        synthetic_table,
        write_synthetic_parquet,
    )
    from .pipeline import Pipeline
    from .pipeline_file import load_pipeline
    from .readers import read_csv, read_images, read_npy, read_parquet, read_zarr
    from .shards import read_manifest, verify
    from .step_registry import known_steps, register_step
    from .steps import FunctionStep, Step
    from .summary import PipelineResult, RunSummary
    from .transforms import Augment, MinMaxScale, Split, StandardScale, TableNoise, transform


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
