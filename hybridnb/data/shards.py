"""Shards and the manifest: Parquet for tables, ``.npy`` for tensors, written atomically.

Layout of a prepared dataset directory::

    out/
      manifest.json          written last: its presence means the dataset is complete
      train/part-00000.parquet            (tables; part-00000-000.parquet, … with shard_rows)
      train/x-00000.npy, train/y-00000.npy  (tensors)
      validation/…, test/… (or all/… when no split step ran)

Everything is written into a temporary sibling directory; the manifest goes in last and
the directory is renamed into place only then. An interrupted run leaves a temporary
directory (cleaned up by the next run), never a half-written dataset that looks finished.

>>> read_manifest("build/data/digits")["counts"]  # doctest: +SKIP
{'train': 1437, 'validation': 180, 'test': 180}
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import UsageError
from ..fileio import sha256_file as sha256
from .dask_dataset import DROPPED, SPLIT_COLUMN, SPLITS

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes what passes through: checksums without a re-read."""

    def __init__(self, fh: BinaryIO):
        super().__init__()
        self._fh = fh
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        return self._fh.write(data)


def write_hashed(path: Path, write: Callable[[BinaryIO], Any]) -> str:
    """Create ``path`` with ``write(file)`` and return the SHA-256 of what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        sink = _HashingFile(fh)
        write(sink)  # type: ignore[arg-type]
    return sink.sha256.hexdigest()


def write_parquet(table: Any, path: Path) -> str:
    """Write an Arrow table as one Parquet file; return its SHA-256.

    Dictionary encoding only for non-float columns: on continuous floats it never pays
    (arrow tries it until the dictionary overflows, then falls back), and skipping it
    makes writing several times faster and the file smaller.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    return write_hashed(path, lambda fh: pq.write_table(table, fh, use_dictionary=dictionary))


def _record(split: str, rows: int, files: dict[str, Path], shas: dict[str, str], root: Path,
            index: int, part: int = 0, nonnull: Mapping[str, int] | None = None
            ) -> dict[str, Any]:
    return {"split": split, "index": index, "part": part, "rows": rows,
            "files": {k: str(p.relative_to(root)) for k, p in files.items()},
            "sha256": dict(shas),
            "bytes": sum(p.stat().st_size for p in files.values()),
            "nonnull": dict(nonnull or {})}


def _pieces(n: int, shard_rows: int | None) -> list[tuple[int, int]]:
    step = shard_rows or max(n, 1)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def write_table_partition(part: Any, root: str, shard_rows: int | None = None,
                          partition_info: Mapping[str, Any] | None = None) -> Any:
    """Write one partition's rows into Parquet files per split; return their records.

    Each split's rows go to ``SPLIT/part-NNNNN.parquet``, or with ``shard_rows`` to
    ``SPLIT/part-NNNNN-MMM.parquet`` files of at most ``shard_rows`` rows each.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    index = int((partition_info or {}).get("number", 0))
    base = Path(root)
    table = pa.Table.from_pandas(part, preserve_index=False)
    if SPLIT_COLUMN in part.columns:
        codes = part[SPLIT_COLUMN].to_numpy()
        table = table.drop_columns([SPLIT_COLUMN])
        groups = [(SPLITS[int(c)], table.take(np.flatnonzero(codes == c)))
                  for c in np.unique(codes) if int(c) != DROPPED]
    else:
        groups = [("all", table)]
    records = []
    for split, rows in groups:
        for j, (lo, hi) in enumerate(_pieces(len(rows), shard_rows)):
            name = f"part-{index:05d}-{j:03d}" if shard_rows else f"part-{index:05d}"
            path = base / split / f"{name}.parquet"
            piece = rows.slice(lo, hi - lo)
            sha = write_parquet(piece, path)
            # Arrow holds pandas' NaN as null: the null counts are free, no pass over values.
            nonnull = {c: len(piece) - piece.column(c).null_count for c in piece.column_names}
            records.append(_record(split, len(piece), {"data": path}, {"data": sha}, base,
                                   index, j, nonnull))
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
        xs = np.ascontiguousarray(x[sel])
        ys = np.ascontiguousarray(y[sel])
        shas = {k: write_hashed(files[k], partial(np.save, arr=a, allow_pickle=False))
                for k, a in (("x", xs), ("y", ys))}
        nonnull = ({"x": int(np.count_nonzero(~np.isnan(xs).all(axis=tuple(range(1, xs.ndim)))))}
                   if xs.dtype.kind == "f" else {"x": len(xs)})
        records.append(json.dumps(_record(split, int(sel.sum()), files, shas, base, index, 0,
                                          nonnull)))
    return records


def table_writes(frame: Any, root: Path, shard_rows: int | None = None) -> Any:
    """A lazy dask DataFrame of shard records: computing it writes every shard."""
    import pandas as pd

    meta = pd.DataFrame({"record": pd.Series([], dtype=object)})
    return frame.map_partitions(write_table_partition, str(root), shard_rows,
                                partition_info=True, meta=meta, enforce_metadata=False)


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
    records.sort(key=lambda r: (SPLITS.index(r["split"]), r["index"], r.get("part", 0)))
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
