"""What a rank process sets up for itself: its log file, its cores, its seeds.

>>> mix(0, 1, 2) == mix(0, 1, 2) != mix(0, 2, 1)
True
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Iterable
from pathlib import Path


def redirect_output(run_dir: Path, rank: int) -> None:
    """Send this process's stdout/stderr (and logging) to ``RUN_DIR/logs/rank<R>.log``."""
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fd = os.open(logs / f"rank{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)  # file descriptors, so C++ (gloo) output lands there too
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")


def rank_cpus(setting: bool | str, allowed: Iterable[int], local_rank: int,
              local_world: int, threads: int) -> list[int] | None:
    """The cores local rank ``local_rank`` is pinned to, or ``None``: not pinned.

    ``True`` pins whenever the cores suffice; ``"auto"`` only when the local ranks'
    threads use every core this process may use.

    >>> rank_cpus("auto", {0, 1}, 1, 2, 1)
    [1]
    >>> rank_cpus("auto", {0, 1, 2, 3}, 1, 2, 1) is None  # half the machine: the OS places
    True
    >>> rank_cpus(True, {0, 1, 2, 3}, 1, 2, 2)
    [2, 3]
    >>> rank_cpus(True, {0, 1}, 1, 2, 2) is None
    True
    """
    cores, need = sorted(allowed), local_world * threads
    if setting is False or need > len(cores) or (setting == "auto" and need != len(cores)):
        return None
    return cores[local_rank * threads:(local_rank + 1) * threads]


def mix(*parts: int) -> int:
    """A 63-bit FNV-1a-style hash of integers: the per-batch seed of ``(seed, rank, step, …)``."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch: the same initial weights on every rank."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
