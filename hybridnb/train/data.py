"""Training data in memory, split and sharded per rank with an order set by (seed, epoch).

Built-in datasets load directly (scikit-learn's digits: 1,797 8×8 images). A directory
prepared by :mod:`hybridnb.data` is read through its :class:`~hybridnb.data.ShardLoader`
once, then held in memory: these datasets are small, and one in-memory order that depends
only on ``(seed, epoch)`` is what makes a restarted run replay the same batches.

>>> from hybridnb.train.spec import DataSpec
>>> arrays = load_arrays(DataSpec(dataset="digits"))
>>> arrays.sizes()
{'train': 1257, 'validation': 180, 'test': 360}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.digits_split import digits_split, digits_split_sizes
from ..errors import UsageError

if TYPE_CHECKING:
    import torch

    from .spec import DataSpec

SPLITS = ("train", "validation", "test")


@dataclass
class Arrays:
    """Inputs and labels of each split, and the preprocessing raw inputs need (JSON).

    ``preprocessing`` is what the bundle applies to raw inputs: the form of
    :mod:`hybridnb.data.preprocessing`, or ``{"mean", "std"}`` for the built-in digits.
    """

    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: list[str] | None = None

    def sizes(self) -> dict[str, int]:
        return {s: int(self.y[s].shape[0]) for s in SPLITS if s in self.y}

    @property
    def input_shape(self) -> list[int]:
        return list(self.x["train"].shape[1:])


def data_sizes(spec: DataSpec) -> dict[str, int]:
    """Sizes of each split, without loading the data (or importing torch).

    The launcher checks a spec with them before it starts any rank, so they must be
    cheap: loading digits here cost ~3 s of a notebook's first ``fit`` (torch, sklearn).

    >>> from hybridnb.train.spec import DataSpec
    >>> data_sizes(DataSpec(dataset="digits", validation_fraction=0.1, test_fraction=0.2))
    {'train': 1257, 'validation': 180, 'test': 360}
    """
    if spec.path is not None:
        return {k: int(v) for k, v in _manifest(spec.path)["counts"].items()}
    return digits_split_sizes(spec.validation_fraction, spec.test_fraction)


def _manifest(path: str) -> dict[str, Any]:
    file = Path(path).expanduser() / "manifest.json"
    if not file.is_file():
        where = "" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"
        raise UsageError(f"data.path {path!r}{where} is not a prepared dataset: no "
                         f"{file.name} there. Write it with 'hybridnb data prepare "
                         "PIPELINE.yaml' (run from the same directory), point to it with "
                         "--data DIR, or train on the built-in digits with --set data=digits")
    data: dict[str, Any] = json.loads(file.read_text())
    return data


def load_arrays(spec: DataSpec) -> Arrays:
    """Load, split and normalize the data a spec names."""
    if spec.path is not None:
        return _from_shards(spec.path)
    return _digits(spec)


def _digits(spec: DataSpec) -> Arrays:
    import torch

    images, y, parts = digits_split(spec.validation_fraction, spec.test_fraction,
                                    spec.split_seed)
    x = images[:, None, :, :]  # N × 1 × 8 × 8
    # One scalar mean/std from the training split: per-pixel std is zero at the borders.
    mean = float(x[parts["train"]].mean())
    std = float(x[parts["train"]].std())
    xs = {s: torch.from_numpy((x[i] - mean) / std) for s, i in parts.items()}
    ys = {s: torch.from_numpy(y[i]) for s, i in parts.items()}
    return Arrays(xs, ys, {"mean": mean, "std": std}, [str(c) for c in range(10)])


def _from_shards(path: str) -> Arrays:
    import numpy as np
    import torch

    manifest = _manifest(path)
    try:
        from ..data import ShardLoader
        from ..data.preprocessing import from_manifest
    except ImportError as exc:  # the data package is optional for a spec with a dataset
        raise UsageError(f"reading {path} needs hybridnb.data: {exc}") from None
    # What the pipeline fitted and applied to each row: the bundle applies it to raw rows.
    pre = from_manifest(manifest)
    features = None if pre.columns is None else list(pre.columns)
    xs, ys = {}, {}
    for split in SPLITS:
        if not manifest["counts"].get(split):
            continue
        # A table's columns in the order the bundle records (the model's input order).
        loader = ShardLoader(path, split=split, batch_size=1 << 20, features=features)
        pairs = list(loader)
        x = torch.cat([p[0] for p in pairs]).float()
        xs[split] = x[:, None] if x.ndim == 3 else x  # H×W images get their channel axis
        ys[split] = torch.cat([p[1] for p in pairs]).long()
    if "train" not in xs:
        raise UsageError(f"{path} has no 'train' split; add a split step to its pipeline")
    if "test" not in xs:
        xs["test"], ys["test"] = xs.get("validation", xs["train"]), ys.get(
            "validation", ys["train"])
    n_classes = int(max(int(y.max()) for y in ys.values())) + 1
    return Arrays(xs, ys, pre.to_json(), [str(c) for c in np.arange(n_classes)])


def epoch_order(n: int, seed: int, epoch: int, rank: int, world_size: int) -> torch.Tensor:
    """The training indices rank ``rank`` reads in ``epoch``.

    A permutation seeded only by ``(seed, epoch)``, cut into ``world_size`` equal
    interleaved parts (the tail that does not divide evenly is dropped, as
    ``DistributedSampler(drop_last=True)``): every rank runs the same number of batches.

    >>> epoch_order(10, seed=0, epoch=0, rank=1, world_size=2).tolist() == \\
    ...     epoch_order(10, seed=0, epoch=0, rank=1, world_size=2).tolist()
    True
    """
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    per_rank = n // world_size
    return perm[rank::world_size][:per_rank]


def eval_indices(n: int, rank: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's evaluation indices, padded to the same length on every rank, and a mask.

    FSDP's forward is collective: every rank must run the same number of batches.
    """
    import torch

    per = -(-n // world_size)
    idx = torch.arange(rank, n, world_size)
    mask = torch.ones(per, dtype=torch.bool)
    if len(idx) < per:
        mask[len(idx):] = False
        idx = torch.cat([idx, torch.zeros(per - len(idx), dtype=torch.long)])
    return idx, mask
