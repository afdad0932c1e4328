"""Shards and the manifest: Parquet for tables, ``.npy`` for tensors, written atomically.

Layout of a prepared dataset directory::

    out/
      manifest.json          written last: its presence means the dataset is complete
      train/part-00000.parquet            (tables)
      train/x-00000.npy, train/y-00000.npy  (tensors)
      validation/…, test/… (or all/… when no split step ran)

Everything is written into a temporary sibling directory; the manifest goes in last and
the directory is renamed into place only then. An interrupted run leaves a temporary
directory (cleaned up by the next run), never a half-written dataset that looks finished.

>>> read_manifest("build/data/digits")["counts"]  # doctest: +SKIP
{'train': 1437, 'validation': 180, 'test': 180}
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fileio import sha256_file as sha256
from .dataset import DROPPED, SPLIT_COLUMN, SPLITS

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


def _record(split: str, rows: int, files: dict[str, Path], root: Path,
            index: int, nonnull: Mapping[str, int] | None = None) -> dict[str, Any]:
    return {"split": split, "index": index, "rows": rows,
            "files": {k: str(p.relative_to(root)) for k, p in files.items()},
            "sha256": {k: sha256(p) for k, p in files.items()},
            "bytes": sum(p.stat().st_size for p in files.values()),
            "nonnull": dict(nonnull or {})}


def write_table_partition(part: Any, root: str,
                          partition_info: Mapping[str, Any] | None = None) -> Any:
    """Write one partition's rows into one Parquet file per split; return their records."""
    import pandas as pd

    index = int((partition_info or {}).get("number", 0))
    base = Path(root)
    records = []
    if SPLIT_COLUMN in part.columns:
        groups = [(SPLITS[int(code)], g.drop(columns=[SPLIT_COLUMN]))
                  for code, g in part.groupby(SPLIT_COLUMN, sort=True) if int(code) != DROPPED]
    else:
        groups = [("all", part)]
    for split, rows in groups:
        if not len(rows):
            continue
        path = base / split / f"part-{index:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(path, index=False)
        records.append(_record(split, len(rows), {"data": path}, base, index,
                               {c: int(v) for c, v in rows.count().items()}))
    return pd.DataFrame({"record": [json.dumps(r) for r in records]}, dtype=object)


def write_tensor_block(x: Any, y: Any, mask: Any, root: str, index: int) -> list[str]:
    """Write one block's samples into ``x-NNNNN.npy``/``y-NNNNN.npy`` per split."""
    import numpy as np

    base = Path(root)
    codes = np.full(len(x), 3, dtype=np.int8) if mask is None else np.asarray(mask)
    records = []
    for code in np.unique(codes):
        if int(code) == DROPPED:
            continue
        split = SPLITS[int(code)]
        sel = codes == code
        files = {"x": base / split / f"x-{index:05d}.npy", "y": base / split / f"y-{index:05d}.npy"}
        files["x"].parent.mkdir(parents=True, exist_ok=True)
        xs = np.ascontiguousarray(x[sel])
        np.save(files["x"], xs)
        np.save(files["y"], np.ascontiguousarray(y[sel]))
        nonnull = ({"x": int(np.count_nonzero(~np.isnan(xs).all(axis=tuple(range(1, xs.ndim)))))}
                   if xs.dtype.kind == "f" else {"x": len(xs)})
        records.append(json.dumps(_record(split, int(sel.sum()), files, base, index, nonnull)))
    return records


def table_writes(frame: Any, root: Path) -> Any:
    """A lazy dask DataFrame of shard records: computing it writes every shard."""
    import pandas as pd

    meta = pd.DataFrame({"record": pd.Series([], dtype=object)})
    return frame.map_partitions(write_table_partition, str(root), partition_info=True,
                                meta=meta, enforce_metadata=False)


def tensor_writes(x: Any, y: Any, mask: Any, root: Path) -> list[Any]:
    """Delayed writes, one per block; unoptimised so x, y and mask share their inputs."""
    from dask import delayed

    xs = x.to_delayed(optimize_graph=False).ravel()
    ys = y.to_delayed(optimize_graph=False).ravel()
    ms = (mask.to_delayed(optimize_graph=False).ravel() if mask is not None
          else [None] * len(xs))
    write = delayed(write_tensor_block, pure=True)
    blocks = enumerate(zip(xs, ys, ms, strict=True))
    return [write(xb, yb, mb, str(root), i) for i, (xb, yb, mb) in blocks]


def parse_records(result: Any) -> list[dict[str, Any]]:
    """Shard records from a computed :func:`table_writes` or :func:`tensor_writes`."""
    if hasattr(result, "columns"):
        texts = list(result["record"])
    else:
        texts = [t for block in result for t in block]
    records = [json.loads(t) for t in texts]
    records.sort(key=lambda r: (SPLITS.index(r["split"]), r["index"]))
    return records


def check_records(records: list[dict[str, Any]], name: str) -> dict[str, int]:
    """Counts per split; a clear error for an empty result or an all-NaN column."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r["split"]] = counts.get(r["split"], 0) + int(r["rows"])
    if not records or not sum(counts.values()):
        raise UsageError(f"dataset {name!r} is empty after the pipeline's steps: nothing to "
                         "write")
    nonnull: dict[str, int] = {}
    for r in records:
        for col, n in r["nonnull"].items():
            nonnull[col] = nonnull.get(col, 0) + int(n)
    for col, n in nonnull.items():
        if n == 0:
            raise UsageError(f"column '{col}' of dataset {name!r} is all NaN; drop it "
                             "(a function step) or fill it (fill_missing) first")
    return {s: counts[s] for s in SPLITS if s in counts}


def temp_dir(out: Path) -> Path:
    """A fresh temporary directory next to ``out`` (same filesystem: rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f"{TMP_PREFIX}{out.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def clean_stale(out: Path) -> None:
    """Remove temporary directories left by interrupted runs writing ``out``."""
    if not out.parent.is_dir():
        return
    for p in out.parent.glob(f"{TMP_PREFIX}{out.name}-*"):
        logger.info("removing %s, left by an interrupted run", p)
        shutil.rmtree(p, ignore_errors=True)


def commit(tmp: Path, out: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest last, then move ``tmp`` into place as ``out``."""
    text = json.dumps(manifest, indent=2, sort_keys=False, default=str)
    part = tmp / (MANIFEST + ".part")
    part.write_text(text)
    os.replace(part, tmp / MANIFEST)
    old = None
    if out.exists():
        # Move the old output aside first: renaming onto a non-empty directory fails.
        old = out.parent / f"{TMP_PREFIX}{out.name}-old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a prepared dataset (its directory or its ``manifest.json``).

    >>> read_manifest("nowhere")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: no prepared dataset at 'nowhere' (no manifest.json): ...
    """
    p = Path(path)
    file = p / MANIFEST if p.suffix != ".json" else p
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except FileNotFoundError:
        raise UsageError(f"no prepared dataset at {str(path)!r} (no {MANIFEST}): run a "
                         f"pipeline with out={str(path)!r} first") from None
    except ValueError as exc:
        raise UsageError(f"{str(file)!r} is not a valid manifest: {exc}") from None
    manifest["_root"] = str(file.parent)
    return manifest


def verify(path: str | Path) -> list[str]:
    """Files whose checksum differs from the manifest's (empty when all are intact)."""
    manifest = read_manifest(path)
    root = Path(manifest["_root"])
    bad = []
    for shard in manifest["shards"]:
        for key, rel in shard["files"].items():
            f = root / rel
            if not f.is_file() or sha256(f) != shard["sha256"][key]:
                bad.append(rel)
    return bad
