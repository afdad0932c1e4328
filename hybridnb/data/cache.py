"""The pipeline's cache: fitted statistics keyed by a hash of their input and parameters.

Checkpointed step outputs use the same keys (:mod:`hybridnb.data.checkpoints`).

Keys chain: a step's key hashes the previous key (ultimately the source's fingerprint)
with the step's token, so changing one step changes its key and every key after it,
and nothing before. A run whose final key matches the output's manifest does no work.

>>> from hybridnb.data.cache import chain
>>> chain("abc", "step") == chain("abc", "step") != chain("abd", "step")
True
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text
from .dask_dataset import fingerprint

logger = logging.getLogger(__name__)

#: Bumped when the on-disk output changes shape, so old outputs are rebuilt.
#: 2: Parquet shards without dictionary-encoded floats; ``shard_rows`` for tables.
#: 3: statistics fit on the training split only; cached as ``{statistics, fit_on}``.
FORMAT_VERSION = 3


def chain(previous: str, token: str) -> str:
    """The key of a step whose input has key ``previous``."""
    return fingerprint(previous, token, FORMAT_VERSION)


def default_cache_dir() -> Path:
    """``$HYBRIDNB_HOME/cache/data``."""
    from ..state import state_home

    return state_home() / "cache" / "data"


class StatsCache:
    """Fitted statistics on disk, one small JSON file per key (safe across processes).

    >>> cache = StatsCache(tmp)  # doctest: +SKIP
    >>> cache.put("k", {"mean": 1.0}); cache.get("k")  # doctest: +SKIP
    {'mean': 1.0}
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            value = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, stats: dict[str, Any]) -> None:
        # A reader (another worker, a later run) never sees half a file.
        atomic_write_text(self._path(key), json.dumps(stats))

    def __repr__(self) -> str:
        return f"StatsCache({str(self.root)!r})"
