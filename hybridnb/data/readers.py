"""Readers: Parquet and CSV (dask.dataframe), ``.npy`` and Zarr (dask.array), image folders.

Every reader checks what it can before any work: the files exist, they share one schema
(a clear error names the two files and the column that differs), and the dataset is not
empty. Each returns a :class:`~hybridnb.data.dask_dataset.DaskDataset` whose fingerprint is
taken from the files' paths, sizes and modification times, so a changed file changes
every cache key downstream.

>>> from hybridnb.data import read_parquet
>>> ds = read_parquet("data/*.parquet", target="label")  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError, did_you_mean
from .dask_dataset import DaskDataset, fingerprint

logger = logging.getLogger(__name__)

PathLike = str | Path


def expand(paths: PathLike | Sequence[PathLike], suffixes: Sequence[str]) -> list[Path]:
    """Files named by ``paths``: files, directories (their files with ``suffixes``), globs."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?["):
            hits = sorted(Path(p) for p in glob.glob(text))
            if not hits:
                raise UsageError(f"no file matches {text!r}")
            out.extend(hits)
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            hits = sorted(p for p in path.rglob("*") if p.suffix in suffixes and p.is_file())
            if not hits:
                raise UsageError(f"directory {str(path)!r} holds no {'/'.join(suffixes)} file")
            out.extend(hits)
        elif path.is_file():
            out.append(path)
        else:
            raise UsageError(f"file not found: {str(path)!r}")
    return out


def file_fingerprint(files: Sequence[Path], *extra: Any) -> str:
    stats = []
    for f in files:
        st = f.stat()
        stats.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return fingerprint(stats, *extra)



def read_parquet(paths: PathLike | Sequence[PathLike], *, target: str | None = None,
                 columns: Sequence[str] | None = None, name: str | None = None,
                 site: str = "local", classification: str = "internal",
                 chunk_rows: int | None = None) -> DaskDataset:
    """Read Parquet files (a file, a directory, a glob or a list) as a table.

    Raises :class:`~hybridnb.errors.UsageError` for a missing file, files whose schemas
    differ (naming both files and the column), or no rows at all.

    Examples
    --------
    >>> read_parquet("missing.parquet")
    Traceback (most recent call last):
    ...
    hybridnb.errors.UsageError: file not found: 'missing.parquet'
    """
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    files = expand(paths, (".parquet", ".pq"))
    first = None
    rows = 0
    for f in files:
        try:
            meta = pq.read_metadata(f)
        except Exception as exc:
            raise UsageError(f"{str(f)!r} is not a readable Parquet file: {exc}") from None
        schema = meta.schema.to_arrow_schema()
        schema = schema.remove_metadata()
        rows += meta.num_rows
        if first is None:
            first = (f, schema)
        elif not schema.equals(first[1]):
            raise UsageError(_schema_diff(first[0], first[1], f, schema))
    if rows == 0:
        raise UsageError(f"dataset is empty: {len(files)} Parquet file(s) with no rows "
                         f"({', '.join(str(f) for f in files[:3])})")
    assert first is not None
    _check_columns(first[0], first[1].names, [*(columns or []), *([target] if target else [])])
    frame = dd.read_parquet([str(f) for f in files], columns=list(columns) if columns else None)
    if chunk_rows:
        frame = frame.repartition(npartitions=max(1, rows // chunk_rows))
    return DaskDataset(name=name or Path(files[0]).stem, kind="table", site=site,
                       classification=classification, frame=frame, target=target, rows=rows,
                       fingerprint=file_fingerprint(files, "parquet", columns, chunk_rows),
                       source=f"parquet: {len(files)} file(s) under {files[0].parent}")


def _schema_diff(a: Path, sa: Any, b: Path, sb: Any) -> str:
    for field in sa:
        if field.name not in sb.names:
            return (f"schema mismatch: column '{field.name}' is in {str(a)!r} but not in "
                    f"{str(b)!r}")
        other = sb.field(field.name)
        if other.type != field.type:
            return (f"schema mismatch: column '{field.name}' is {field.type} in {str(a)!r} "
                    f"but {other.type} in {str(b)!r}")
    extra = [n for n in sb.names if n not in sa.names]
    return (f"schema mismatch: column '{extra[0] if extra else '?'}' is in {str(b)!r} but not "
            f"in {str(a)!r}")


def _check_columns(path: Path, have: Sequence[str], wanted: Sequence[str]) -> None:
    for col in wanted:
        if col not in have:
            raise UsageError(f"column '{col}'{did_you_mean(col, have)} is not in {str(path)!r}; "
                             f"columns: {', '.join(have)}")


def read_csv(paths: PathLike | Sequence[PathLike], *, target: str | None = None,
             name: str | None = None, site: str = "local", classification: str = "internal",
             chunk_rows: int | None = None, **options: Any) -> DaskDataset:
    """Read CSV files as a table (``options`` go to ``dask.dataframe.read_csv``).

    Every file must have the same header line; a file with no data rows is allowed only
    when another file has some.

    >>> read_csv("data/*.csv", target="label")  # doctest: +SKIP
    """
    import dask.dataframe as dd

    files = expand(paths, (".csv",))
    header = None
    any_rows = False
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            line = fh.readline().rstrip("\r\n")
            any_rows = any_rows or bool(fh.readline().strip())
        cols = line.split(options.get("sep", ","))
        if not line:
            raise UsageError(f"{str(f)!r} is empty (no header line)")
        if header is None:
            header = (f, cols)
        elif cols != header[1]:
            missing = [c for c in header[1] if c not in cols] or [c for c in cols
                                                                  if c not in header[1]]
            raise UsageError(f"schema mismatch: header of {str(f)!r} differs from "
                             f"{str(header[0])!r} (column '{missing[0] if missing else '?'}'"
                             " differs or is out of order)")
    if not any_rows:
        raise UsageError(f"dataset is empty: {len(files)} CSV file(s) with a header and no rows")
    assert header is not None
    if target:
        _check_columns(header[0], header[1], [target])
    frame = dd.read_csv([str(f) for f in files], **options)
    return DaskDataset(name=name or files[0].stem, kind="table", site=site,
                       classification=classification, frame=frame, target=target,
                       fingerprint=file_fingerprint(files, "csv", sorted(options.items())),
                       source=f"csv: {len(files)} file(s) under {files[0].parent}")


class _NpyFile:
    """Array-like view of a ``.npy`` file that pickles as its path (workers memory-map it)."""

    def __init__(self, path: str):
        import numpy as np

        self.path = path
        arr = np.load(path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim

    def __getitem__(self, key: Any) -> Any:
        import numpy as np

        return np.asarray(np.load(self.path, mmap_mode="r")[key])


def read_npy(x: PathLike, y: PathLike | None = None, *, name: str | None = None,
             site: str = "local", classification: str = "internal",
             chunk_rows: int = 4096, labels: PathLike | None = None) -> DaskDataset:
    """Read samples from ``x`` (a ``.npy`` file) and labels from ``y`` (another one).

    Files are memory-mapped where the chunk is read, so they never pass through the
    client. ``labels`` is an alias of ``y`` (for configured datasets).

    >>> read_npy("x.npy", "y.npy", chunk_rows=1024)  # doctest: +SKIP
    """
    import dask.array as da
    import numpy as np

    y = y if y is not None else labels
    xfile = expand(x, (".npy",))[0]
    try:
        xs = _NpyFile(str(xfile))
    except ValueError as exc:
        raise UsageError(f"{str(xfile)!r} is not a .npy file: {exc}") from None
    if xs.shape[0] == 0:
        raise UsageError(f"dataset is empty: {str(xfile)!r} has no samples")
    files = [xfile]
    chunks = (chunk_rows, *xs.shape[1:])
    xarr = da.from_array(xs, chunks=chunks, lock=False, meta=np.empty((0,) * xs.ndim, xs.dtype))
    if y is not None:
        yfile = expand(y, (".npy",))[0]
        ys = _NpyFile(str(yfile))
        if ys.shape[0] != xs.shape[0]:
            raise UsageError(f"{str(yfile)!r} has {ys.shape[0]} labels but {str(xfile)!r} has "
                             f"{xs.shape[0]} samples")
        files.append(yfile)
        yarr = da.from_array(ys, chunks=(chunk_rows,), lock=False,
                             meta=np.empty((0,), ys.dtype))
    else:
        yarr = da.zeros(xs.shape[0], chunks=chunk_rows, dtype=np.int64)
    return DaskDataset(name=name or xfile.stem, kind="tensor", site=site,
                       classification=classification, x=xarr, y=yarr,
                       fingerprint=file_fingerprint(files, "npy", chunk_rows),
                       source=f"npy: {xfile}")


def read_zarr(path: PathLike, *, x: str = "x", y: str | None = "y", name: str | None = None,
              site: str = "local", classification: str = "internal",
              chunk_rows: int | None = None) -> DaskDataset:
    """Read arrays ``x`` and ``y`` of a Zarr group (needs the ``zarr`` package).

    >>> read_zarr("images.zarr")  # doctest: +SKIP
    """
    import dask.array as da

    root = Path(path).expanduser()
    if not root.exists():
        raise UsageError(f"file not found: {str(root)!r}")
    try:
        xarr = da.from_zarr(str(root), component=x)
    except ImportError:
        raise UsageError("reading Zarr needs the 'zarr' package: pip install zarr") from None
    except Exception as exc:
        raise UsageError(f"{str(root)!r} has no Zarr array '{x}': {exc}") from None
    if xarr.shape[0] == 0:
        raise UsageError(f"dataset is empty: {str(root)!r}/{x} has no samples")
    rows = chunk_rows or xarr.chunks[0][0]
    xarr = xarr.rechunk((rows, *xarr.shape[1:]))
    if y is not None:
        try:
            yarr = da.from_zarr(str(root), component=y).rechunk((rows,))
        except Exception as exc:
            raise UsageError(f"{str(root)!r} has no Zarr array '{y}': {exc}") from None
    else:
        import numpy as np

        yarr = da.zeros(xarr.shape[0], chunks=rows, dtype=np.int64)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return DaskDataset(name=name or root.stem, kind="tensor", site=site,
                       classification=classification, x=xarr, y=yarr,
                       fingerprint=file_fingerprint(files, "zarr", x, y, rows),
                       source=f"zarr: {root}")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def _read_images(paths: list[str], shape: tuple[int, ...]) -> Any:
    import numpy as np
    from PIL import Image

    out = np.empty((len(paths), *shape), dtype=np.uint8)
    for i, p in enumerate(paths):
        arr = np.asarray(Image.open(p))
        if arr.shape != shape:
            raise UsageError(f"image {p!r} has shape {arr.shape}, expected {shape} like the "
                             "first image; resize the images first")
        out[i] = arr
    return out


def read_images(root: PathLike, *, name: str | None = None, site: str = "local",
                classification: str = "internal", chunk_rows: int = 1024) -> DaskDataset:
    """Read an image folder laid out as ``root/<class name>/<image file>``.

    Labels are the class folders' indices in sorted order (``labels`` in the source).

    >>> read_images("pets/")  # doctest: +SKIP
    """
    import dask.array as da
    import numpy as np
    from dask import delayed
    from PIL import Image

    top = Path(root).expanduser()
    if not top.is_dir():
        raise UsageError(f"image folder not found: {str(top)!r}")
    classes = sorted(p.name for p in top.iterdir() if p.is_dir())
    files: list[tuple[str, int]] = []
    for label, cls in enumerate(classes):
        files += [(str(p), label) for p in sorted((top / cls).iterdir())
                  if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UsageError(f"dataset is empty: no image under {str(top)!r}/<class>/ "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    shape = tuple(np.asarray(Image.open(files[0][0])).shape)
    blocks = []
    for start in range(0, len(files), chunk_rows):
        part = [p for p, _ in files[start:start + chunk_rows]]
        blocks.append(da.from_delayed(delayed(_read_images, pure=True)(part, shape),
                                      (len(part), *shape), dtype=np.uint8))
    labels = np.array([label for _, label in files], dtype=np.int64)
    return DaskDataset(name=name or top.name, kind="tensor", site=site,
                       classification=classification, x=da.concatenate(blocks),
                       y=da.from_array(labels, chunks=(chunk_rows,)),
                       fingerprint=file_fingerprint([Path(p) for p, _ in files], "images",
                                                    chunk_rows),
                       source=f"images: {len(files)} files in {len(classes)} classes "
                              f"({', '.join(classes[:5])}{'…' if len(classes) > 5 else ''})")


_READERS: dict[str, Callable[..., DaskDataset]] = {
    "parquet": read_parquet, "csv": read_csv, "npy": read_npy, "zarr": read_zarr,
    "images": read_images,
}


def reader_for(fmt: str) -> Callable[..., DaskDataset]:
    """The reader of a configured dataset's ``format``.

    >>> reader_for("parquet").__name__
    'read_parquet'
    """
    try:
        return _READERS[fmt]
    except KeyError:
        raise UsageError(f"unknown dataset format '{fmt}'{did_you_mean(fmt, _READERS)}; "
                         f"known: {', '.join(sorted(_READERS))}, builtin") from None


