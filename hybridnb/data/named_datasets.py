"""Datasets by name: configured ones, built-ins (``digits``) and synthetic generators.

>>> from hybridnb.data import load, synthetic_table
>>> load("digits").x.shape
(1797, 8, 8)
>>> synthetic_table(1000, 4, seed=0, partitions=2).npartitions
2
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, did_you_mean
from .dask_dataset import DaskDataset, fingerprint

if TYPE_CHECKING:
    from ..config import HybridConfig

logger = logging.getLogger(__name__)

#: Built-in datasets: name -> loader. They need no download.
BUILTINS = ("digits",)
#: Residency of a built-in dataset nobody configured.
BUILTIN_SITE = "local"
BUILTIN_CLASSIFICATION = "public"


def residency(name: str, config: HybridConfig | None, default_site: str = BUILTIN_SITE,
              default_classification: str = BUILTIN_CLASSIFICATION) -> tuple[str, str]:
    """``(site, classification)`` of ``name``: from ``config.datasets``, else the defaults."""
    if config is not None and name in config.datasets:
        ds = config.datasets[name]
        return ds.site, ds.classification
    return default_site, default_classification


def load(name: str, *, config: HybridConfig | None = None, chunk_rows: int | None = None,
         **reader_options: Any) -> DaskDataset:
    """Load a configured or built-in dataset as a :class:`DaskDataset`.

    Parameters
    ----------
    name:
        A dataset under ``datasets:`` in the configuration (read with the reader its
        ``format`` names), or a built-in (``"digits"``).
    config:
        The configuration; default :func:`hybridnb.load_config`.
    chunk_rows:
        Samples per chunk/partition (built-ins and ``npy``); default: the reader's.
    **reader_options:
        Passed to the reader (``target=``, ``labels=``, …).

    Examples
    --------
    >>> ds = load("digits", chunk_rows=600)
    >>> ds.npartitions, ds.classification
    (3, 'public')
    """
    if config is None:
        from ..config import load_config

        config = load_config()
    if name in config.datasets and config.datasets[name].format != "builtin":
        entry = config.datasets[name]
        from . import readers

        reader = readers.reader_for(entry.format)
        if chunk_rows is not None:
            reader_options.setdefault("chunk_rows", chunk_rows)
        ds = reader(entry.path, name=name, site=entry.site,
                    classification=entry.classification, **reader_options)
        return ds
    builtin = name
    if name in config.datasets:  # format: builtin, path names the built-in
        builtin = config.datasets[name].path
    if builtin == "digits":
        site, classification = residency(name, config)
        return digits(chunk_rows=chunk_rows or 600, name=name, site=site,
                      classification=classification)
    known = sorted({*BUILTINS, *config.datasets})
    raise UsageError(f"unknown dataset '{name}'{did_you_mean(name, known)}; known: "
                     f"{', '.join(known)}. Declare it under 'datasets:' in hybridnb.yaml, "
                     "or read files with hybridnb.data.read_parquet/read_csv/read_npy")


def digits(*, chunk_rows: int = 600, name: str = "digits", site: str = BUILTIN_SITE,
           classification: str = BUILTIN_CLASSIFICATION) -> DaskDataset:
    """scikit-learn's bundled 8×8 digits (1,797 images, 10 classes) as dask arrays.

    >>> digits().y.dtype
    dtype('int64')
    """
    import dask.array as da
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return DaskDataset(
        name=name, kind="tensor", site=site, classification=classification,
        fingerprint=fingerprint("builtin", "digits", images.shape, chunk_rows),
        source="sklearn.datasets.load_digits",
        x=da.from_array(images, chunks=(chunk_rows, 8, 8)),
        y=da.from_array(labels, chunks=(chunk_rows,)))


def _chunks(n: int, size: int) -> tuple[int, ...]:
    if n <= 0:
        raise UsageError(f"a dataset needs at least one sample, got {n}")
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


def _image_block(block_index: int, start: int, rows: int, shape: tuple[int, ...],
                 classes: int, seed: int) -> tuple[Any, Any]:
    import numpy as np

    # Each chunk's generator comes from (seed, chunk start): the same data on any
    # number of workers.
    rng = np.random.default_rng([seed, start])
    y = rng.integers(0, classes, size=rows)
    # A class-dependent pattern plus noise, so models can learn something.
    grid = np.linspace(0.0, 1.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    x = (np.sin(grid[None] * (y[:, None, None] + 1) * 3.0).astype(np.float32)
         if len(shape) == 2 else np.broadcast_to(grid, (rows, *shape)).astype(np.float32))
    x = x + rng.normal(0.0, 0.3, size=(rows, *shape)).astype(np.float32)
    return x, y.astype(np.int64)


def synthetic_images(n: int, shape: Sequence[int] = (28, 28), classes: int = 10,
                     seed: int = 0, *, chunk_rows: int = 1024, name: str = "synthetic-images",
                     site: str = BUILTIN_SITE,
                     classification: str = BUILTIN_CLASSIFICATION) -> DaskDataset:
    """``n`` random images of ``shape`` with labels in ``range(classes)``, generated lazily.

    >>> ds = synthetic_images(100, (8, 8), classes=3, chunk_rows=40)
    >>> ds.x.chunks[0]
    (40, 40, 20)
    """
    import dask.array as da
    import numpy as np
    from dask import delayed

    shape = tuple(int(s) for s in shape)
    xs, ys = [], []
    start = 0
    for i, rows in enumerate(_chunks(n, chunk_rows)):
        block = delayed(_image_block, pure=True)(i, start, rows, shape, classes, seed)
        xs.append(da.from_delayed(block[0], (rows, *shape), dtype=np.float32))
        ys.append(da.from_delayed(block[1], (rows,), dtype=np.int64))
        start += rows
    return DaskDataset(
        name=name, kind="tensor", site=site, classification=classification,
        fingerprint=fingerprint("synthetic_images", n, shape, classes, seed, chunk_rows),
        source=f"synthetic_images(n={n}, shape={shape}, classes={classes}, seed={seed})",
        x=da.concatenate(xs), y=da.concatenate(ys))


def table_partition(index: int, rows: int, cols: int, seed: int, missing: float,
                    duplicates: float) -> Any:
    """Partition ``index`` of :func:`synthetic_table` (a pandas DataFrame)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, index])
    data = rng.normal(0.0, 1.0, size=(rows, cols))
    data *= np.arange(1, cols + 1)  # columns on different scales: normalisation matters
    if missing:
        data[rng.random(size=data.shape) < missing] = np.nan
    frame = pd.DataFrame(data, columns=[f"f{j}" for j in range(cols)])
    frame["label"] = rng.integers(0, 3, size=rows).astype("int64")
    if duplicates and rows > 1:
        k = int(rows * duplicates)
        if k:
            frame.iloc[rows - k:] = frame.iloc[:k].to_numpy()
            frame["label"] = frame["label"].astype("int64")
    return frame


def synthetic_table(rows: int, cols: int = 8, seed: int = 0, *, partitions: int | None = None,
                    missing: float = 0.0, duplicates: float = 0.0,
                    name: str = "synthetic-table", site: str = BUILTIN_SITE,
                    classification: str = BUILTIN_CLASSIFICATION) -> DaskDataset:
    """A table of ``rows`` × ``cols`` float features and an integer ``label``, lazily.

    ``missing`` is the fraction of NaN cells, ``duplicates`` the fraction of rows per
    partition that repeat earlier ones. Partition ``i`` is drawn from ``(seed, i)``.

    >>> ds = synthetic_table(10, 2, seed=1)
    >>> ds.columns
    ['f0', 'f1', 'label']
    """
    import dask.dataframe as dd

    nparts = partitions or max(1, rows // 100_000)
    sizes = [rows // nparts + (1 if i < rows % nparts else 0) for i in range(nparts)]
    if rows <= 0 or cols <= 0:
        raise UsageError(f"synthetic_table needs rows > 0 and cols > 0, got {rows}, {cols}")
    meta = table_partition(0, 0, cols, seed, 0.0, 0.0)
    frame = dd.from_map(table_partition, list(range(nparts)), sizes, cols=cols, seed=seed,
                        missing=missing, duplicates=duplicates, meta=meta,
                        enforce_metadata=False)
    return DaskDataset(
        name=name, kind="table", site=site, classification=classification,
        fingerprint=fingerprint("synthetic_table", rows, cols, seed, nparts, missing,
                                duplicates),
        source=f"synthetic_table(rows={rows}, cols={cols}, seed={seed})",
        frame=frame, target="label", rows=rows)


def write_synthetic_parquet(path: str | Path, rows: int, cols: int = 8, seed: int = 0, *,
                            partitions: int | None = None, missing: float = 0.0,
                            client: Any = None) -> Path:
    """Write :func:`synthetic_table` to a Parquet directory, one partition at a time.

    Generation streams: no more than a few partitions are in memory at once, so the
    file can be far larger than memory (used by the out-of-core test and the benchmark).

    >>> write_synthetic_parquet(tmp / "t", 1000, 3)  # doctest: +SKIP
    """
    ds = synthetic_table(rows, cols, seed, partitions=partitions, missing=missing)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    writes = ds.frame.to_parquet(str(path), write_index=False, compute=False)
    if client is not None:
        client.compute(writes).result()
    else:
        import dask

        dask.compute(writes)
    return path
