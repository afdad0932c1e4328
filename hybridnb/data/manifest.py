"""The manifest of a prepared dataset: what it is, where it came from, how it was made.

``manifest.json`` holds the schema, the source and its residency, every step with its
parameters, cache key, fitted statistics and the rows they were fit on (``fit_on``:
the split and its row count), counts per split, and each shard's files,
row count and SHA-256 checksums (:func:`hybridnb.data.shards.verify` checks them).

>>> build_manifest(name, steps, shard_rows, source, ds, keys, final,  # doctest: +SKIP
...                reports, records, counts, summary)["counts"]
{'train': 1437, 'validation': 180, 'test': 180}
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .cache import FORMAT_VERSION
from .dask_dataset import DaskDataset

if TYPE_CHECKING:
    from .steps import Step
    from .summary import RunSummary, StepReport


def build_manifest(name: str, steps: Sequence[Step], shard_rows: int | None,
                   source: DaskDataset, ds: DaskDataset, keys: list[str], final: str,
                   reports: list[StepReport], records: list[dict[str, Any]],
                   counts: dict[str, int], summary: RunSummary) -> dict[str, Any]:
    """The manifest's content (written last, by :func:`hybridnb.data.shards.commit`) of
    pipeline ``name`` with ``steps``."""
    return {
        "format": "hybridnb-dataset", "version": FORMAT_VERSION, "key": final,
        "pipeline": name, "name": source.name, "kind": ds.kind, "site": source.site,
        "classification": source.classification, "source": source.source,
        "fingerprint": source.fingerprint, "schema": ds.describe(), "target": ds.target,
        "shard_rows": shard_rows,
        "steps": [{"name": s.name, "params": s.params(), "key": k, "statistics": r.statistics,
                   "fit_on": r.fit_on}
                  for s, k, r in zip(steps, keys, reports[:len(keys)], strict=True)],
        "counts": counts, "bytes": sum(r["bytes"] for r in records),
        "shards": [{k: v for k, v in r.items() if k != "nonnull"} for r in records],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summary.to_dict(),
    }
