"""Training loader: prepared shards to torch tensors, per DDP rank, in whole batches.

Each rank reads its own part of the data: the epoch's order is a permutation of shards
then of samples within each shard (seeded by ``(seed, epoch)``), and rank ``r`` takes the
``r``-th contiguous slice of it, so it touches about ``1/world_size`` of the shards.
Batches are sliced from memory-mapped ``.npy`` shards with one fancy index per shard
(no per-sample collate), and every rank yields the same number of batches (DDP needs it).

>>> from hybridnb.data import ShardLoader
>>> loader = ShardLoader("build/data/digits", split="train", batch_size=64)  # doctest: +SKIP
>>> for x, y in loader: ...  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .shards import read_manifest

logger = logging.getLogger(__name__)


class ShardLoader:
    """Iterate ``(x, y)`` torch tensors of one split of a prepared dataset.

    Parameters
    ----------
    manifest_or_dir:
        The output directory of a pipeline run, its ``manifest.json``, or the manifest.
    split:
        ``train``, ``validation``, ``test`` (or ``all`` when nothing was split).
    rank, world_size:
        This process's DDP rank and the number of ranks (default: a single process).
    batch_size, shuffle, seed, drop_last:
        As in ``torch.utils.data.DataLoader``; call :meth:`set_epoch` each epoch to
        reshuffle.

    Examples
    --------
    >>> loader = ShardLoader(out, split="train", rank=0, world_size=2,  # doctest: +SKIP
    ...                      batch_size=32, shuffle=True, seed=0)
    >>> loader.set_epoch(1); len(loader)  # doctest: +SKIP
    23
    """

    def __init__(self, manifest_or_dir: str | Path | Mapping[str, Any], split: str = "train",
                 *, rank: int = 0, world_size: int = 1, batch_size: int = 64,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 features: list[str] | None = None):
        manifest = (dict(manifest_or_dir) if isinstance(manifest_or_dir, Mapping)
                    else read_manifest(manifest_or_dir))
        if not 0 <= rank < world_size:
            raise UsageError(f"rank {rank} is not in range(world_size={world_size})")
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if split not in manifest["counts"]:
            raise UsageError(f"split '{split}' is not in {manifest.get('_root', 'the dataset')}"
                             f"; splits: {', '.join(manifest['counts'])}")
        self.root = Path(manifest.get("_root", "."))
        self.manifest = manifest
        self.split, self.rank, self.world_size = split, rank, world_size
        self.batch_size, self.shuffle, self.seed, self.drop_last = (batch_size, shuffle, seed,
                                                                    drop_last)
        self.epoch = 0
        self.shards = [s for s in manifest["shards"] if s["split"] == split]
        self.kind = manifest["kind"]
        self.target = manifest.get("target")
        self.features = features
        self._sizes = [int(s["rows"]) for s in self.shards]
        self._arrays: dict[int, tuple[Any, Any]] = {}
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes)]).astype(np.int64)
        # Every rank gets the same number of samples, as DistributedSampler(drop_last=True).
        self.per_rank = int(self._offsets[-1]) // world_size

    # -- shards ---------------------------------------------------------------------------

    def _shard(self, i: int) -> tuple[Any, Any]:
        hit = self._arrays.get(i)
        if hit is not None:
            return hit

        files = self.shards[i]["files"]
        if self.kind == "tensor":
            pair = (np.load(self.root / files["x"], mmap_mode="r"),
                    np.load(self.root / files["y"], mmap_mode="r"))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(self.root / files["data"])
            cols = self.features or [c for c in table.column_names if c != self.target]
            x = np.column_stack([table[c].to_numpy(zero_copy_only=False) for c in cols]
                                ).astype(np.float32)
            y = (table[self.target].to_numpy() if self.target
                 else np.zeros(len(x), dtype=np.int64))
            pair = (x, y)
        self._arrays[i] = pair
        return pair

    def order(self) -> Any:
        """Global sample indices this rank reads this epoch, in order."""

        if not self.shuffle:
            order = np.arange(self._offsets[-1], dtype=np.int64)
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            parts = [rng.permutation(self._sizes[i]) + self._offsets[i]
                     for i in rng.permutation(len(self._sizes))]
            order = np.concatenate(parts) if parts else np.arange(0, dtype=np.int64)
        start = self.rank * self.per_rank
        return order[start:start + self.per_rank]

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (the same on every rank, different across epochs)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        full, rest = divmod(self.per_rank, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _gather(self, idx: Any) -> tuple[Any, Any]:

        shard_of = np.searchsorted(self._offsets, idx, side="right") - 1
        if shard_of[0] == shard_of[-1] and (not self.shuffle or len(idx) == 1
                                            or bool((np.diff(idx) == 1).all())):
            # Contiguous within one shard: one slice, one copy.
            xs, ys = self._shard(int(shard_of[0]))
            lo = int(idx[0] - self._offsets[shard_of[0]])
            return (np.array(xs[lo:lo + len(idx)]), np.array(ys[lo:lo + len(idx)]))
        xparts, yparts = [], []
        # Batches come from few shards; keep the batch's order within each run of a shard.
        bounds = np.flatnonzero(np.diff(shard_of)) + 1
        for run in np.split(np.arange(len(idx)), bounds):
            s = int(shard_of[run[0]])
            xs, ys = self._shard(s)
            local = idx[run] - self._offsets[s]
            xparts.append(xs[local])
            yparts.append(ys[local])
        return np.concatenate(xparts), np.concatenate(yparts)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        import torch

        order = self.order()
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x, y = self._gather(idx)
            yield torch.from_numpy(x), torch.from_numpy(np.asarray(y))

    def __repr__(self) -> str:
        return (f"<ShardLoader {str(self.root)!r} split={self.split} rank={self.rank}/"
                f"{self.world_size}: {self.per_rank} samples, {len(self)} batches of "
                f"{self.batch_size}>")

    def _repr_html_(self) -> str:
        return (f"<p><b>ShardLoader</b> {escape(str(self.root))} — split {escape(self.split)}, "
                f"rank {self.rank} of {self.world_size}, {self.per_rank} samples, "
                f"{len(self)} batches of {self.batch_size}, shuffle={self.shuffle}</p>")
