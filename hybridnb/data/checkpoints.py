"""Checkpoints: a step's output kept in the cache, so that a rerun resumes after it.

A checkpoint is keyed like fitted statistics (:func:`hybridnb.data.cache.chain`): the
hash of the source and of every step up to and including the checkpointed one. A rerun
looks for the latest step whose checkpoint matches and starts from its files: changing
step ``k`` recomputes from the nearest checkpoint before ``k``, and steps before it do
not run at all.

Writing a checkpoint costs a write and a read of that step's output, so only steps
marked ``checkpoint=True`` (or ``Pipeline.run(checkpoint=[...])``) and expensive steps
(a shuffle: :class:`~hybridnb.data.cleaning.Deduplicate`) are checkpointed; cheap row-wise
steps are recomputed. Layout, under the cache directory::

    checkpoints/KEY/checkpoint.json   written last: its presence means complete
    checkpoints/KEY/part-NNNNN.parquet            (tables, one file per partition)
    checkpoints/KEY/x-NNNNN.npy, y-…, mask-…     (tensors, one file per block)
    checkpoints/slots/SLOT            the key last written by one step of one pipeline

Files go into a temporary directory renamed into place once complete. Each
``(pipeline, output, step)`` slot keeps its latest checkpoint only, so the cache does
not grow with every edit.

>>> store = Checkpoints(tmp)  # doctest: +SKIP
>>> store.find(["k1", "k2"])  # doctest: +SKIP
(1, {...})
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_json, atomic_write_text
from .cache import FORMAT_VERSION
from .dask_dataset import DaskDataset

logger = logging.getLogger(__name__)

INFO = "checkpoint.json"
TMP_PREFIX = ".tmp-"
#: Temporary directories older than this were left by killed runs (a live run writes
#: into its own for far less time).
STALE_SECONDS = 24 * 3600


def _write_table_part(part: Any, root: str,
                      partition_info: Mapping[str, Any] | None = None) -> Any:
    import pandas as pd
    import pyarrow as pa

    from .shards import write_parquet

    index = int((partition_info or {}).get("number", 0))
    write_parquet(pa.Table.from_pandas(part, preserve_index=False),
                  Path(root) / f"part-{index:05d}.parquet")
    return pd.Series([len(part)], index=[index], dtype="int64")


def _read_table_part(path: str) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def _write_tensor_block(x: Any, y: Any, mask: Any, root: str, index: int) -> int:
    import numpy as np

    base = Path(root)
    np.save(base / f"x-{index:05d}.npy", x)
    np.save(base / f"y-{index:05d}.npy", y)
    if mask is not None:
        np.save(base / f"mask-{index:05d}.npy", mask)
    return len(x)


def _load(path: str) -> Any:
    import numpy as np

    return np.load(path)


class Checkpoints:
    """The checkpoints under a cache directory (``cache_root/checkpoints``)."""

    def __init__(self, cache_root: str | Path):
        self.root = Path(cache_root) / "checkpoints"

    def path(self, key: str) -> Path:
        return self.root / key

    def info(self, key: str) -> dict[str, Any] | None:
        """A complete checkpoint's description, or ``None`` (absent, partial, outdated)."""
        try:
            info = json.loads((self.path(key) / INFO).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or info.get("format") != FORMAT_VERSION:
            return None
        return info

    def find(self, keys: Sequence[str]) -> tuple[int, dict[str, Any]] | None:
        """The latest step (index into ``keys``) with a complete checkpoint, and its info."""
        for i in range(len(keys) - 1, -1, -1):
            info = self.info(keys[i])
            if info is not None:
                return i, info
        return None

    def begin(self) -> Path:
        """A fresh temporary directory to write one checkpoint into."""
        self.root.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in self.root.glob(f"{TMP_PREFIX}*"):
            try:
                if now - old.stat().st_mtime > STALE_SECONDS:
                    logger.info("removing %s, left by an interrupted run", old)
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        tmp = self.root / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        return tmp

    def writes(self, ds: DaskDataset, tmp: Path) -> list[Any]:
        """Lazy writes of ``ds`` into ``tmp``; computed, they give the rows of each part."""
        if ds.kind == "table":
            import pandas as pd

            return [ds.frame.map_partitions(_write_table_part, str(tmp), partition_info=True,
                                            meta=pd.Series([], dtype="int64"),
                                            enforce_metadata=False)]
        from dask import delayed

        # Unoptimised so that x, y and mask blocks share their inputs in one graph.
        xs = ds.x.to_delayed(optimize_graph=False).ravel()
        ys = ds.y.to_delayed(optimize_graph=False).ravel()
        ms = (ds.mask.to_delayed(optimize_graph=False).ravel() if ds.mask is not None
              else [None] * len(xs))
        write = delayed(_write_tensor_block, pure=True)
        return [write(xb, yb, mb, str(tmp), i)
                for i, (xb, yb, mb) in enumerate(zip(xs, ys, ms, strict=True))]

    def describe(self, ds: DaskDataset, done: Sequence[Any]) -> dict[str, Any]:
        """What :meth:`load` needs besides the files: partition sizes, dtypes, shapes."""
        if ds.kind == "table":
            rows = [int(n) for n in done[0]]
            return {"kind": "table", "rows": rows}
        rows = [int(n) for n in done]
        return {"kind": "tensor", "rows": rows, "x": {"dtype": str(ds.x.dtype),
                                                      "shape": list(ds.x.shape[1:])},
                "y": str(ds.y.dtype), "mask": ds.mask is not None}

    def commit(self, tmp: Path, key: str, info: dict[str, Any], slot: str,
               meta: Any = None, replace: bool = False) -> None:
        """Describe ``tmp`` (``info``), move it into place as ``key``, retire the slot's
        previous checkpoint.

        A complete checkpoint already there (a concurrent run wrote the same key) is
        kept, since another run may be reading it, unless ``replace`` (a forced run).
        """
        final = self.path(key)
        if not replace and self.info(key) is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            self._retire(slot, key)
            return
        if meta is not None:
            import pyarrow as pa

            from .shards import write_parquet

            write_parquet(pa.Table.from_pandas(meta, preserve_index=False),
                          tmp / "meta.parquet")
        atomic_write_json(tmp / INFO, {"format": FORMAT_VERSION, "key": key, **info})
        old = None
        if final.exists():  # a forced rerun rewrites it: move the old one aside first
            old = self.root / f"{TMP_PREFIX}old-{uuid.uuid4().hex[:12]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._retire(slot, key)

    def _retire(self, slot: str, key: str) -> None:
        slots = self.root / "slots"
        try:
            previous = (slots / slot).read_text().strip()
        except OSError:
            previous = ""
        atomic_write_text(slots / slot, key)
        if not previous or previous == key:
            return
        # Another pipeline (or output) may resume from the same checkpoint: keep it then.
        for other in slots.iterdir():
            if other.name != slot and other.read_text().strip() == previous:
                return
        logger.info("removing superseded checkpoint %s", previous[:12])
        shutil.rmtree(self.path(previous), ignore_errors=True)

    def load(self, key: str, info: Mapping[str, Any], like: DaskDataset) -> DaskDataset:
        """The checkpointed dataset, lazily, with ``like``'s name, residency and source."""
        root = self.path(key)
        rows = [int(n) for n in info["rows"]]
        if info["kind"] == "table":
            import dask.dataframe as dd
            import pandas as pd

            meta = pd.read_parquet(root / "meta.parquet")
            # One partition per file, in order: partition numbers (which seed splits and
            # noise) are the same as in a run that did not resume.
            files = [str(root / f"part-{i:05d}.parquet") for i in range(len(rows))]
            frame = dd.from_map(_read_table_part, files, meta=meta, enforce_metadata=False,
                                label="checkpoint")
            return like.evolve(kind="table", frame=frame, rows=sum(rows))
        import dask.array as da
        import numpy as np
        from dask import delayed

        load = delayed(_load, pure=True)
        shape = tuple(info["x"]["shape"])

        def blocks(prefix: str, dtype: str, tail: tuple[int, ...]) -> Any:
            return da.concatenate([
                da.from_delayed(load(str(root / f"{prefix}-{i:05d}.npy")), (n, *tail),
                                dtype=np.dtype(dtype)) for i, n in enumerate(rows)])

        return like.evolve(kind="tensor", x=blocks("x", info["x"]["dtype"], shape),
                           y=blocks("y", info["y"], ()),
                           mask=blocks("mask", "int8", ()) if info["mask"] else None)
