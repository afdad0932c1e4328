"""An optional LRU cache of answers, keyed by a digest of the input batch.

Off by default (``ServeSettings.cache_size = 0``): it only helps when the same inputs
come back (dashboards polling, retries), and only a deterministic model may use it.
The key is a BLAKE2b digest of dtype, shape and raw bytes, so equal arrays hit whatever
JSON spelling they arrived in, and memory per entry is the output plus 16 bytes.

>>> import numpy as np
>>> cache = ResponseCache(2)
>>> x = np.ones((1, 3), np.float32)
>>> cache.get(x) is None
True
>>> cache.put(x, np.zeros((1, 2))); cache.get(x).shape
(1, 2)
>>> cache.hits, cache.misses
(1, 1)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def input_key(x: np.ndarray) -> bytes:
    """A digest of ``x``'s dtype, shape and contents."""
    import numpy as np

    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{x.dtype.str}{x.shape}".encode())
    digest.update(np.ascontiguousarray(x).data)
    return digest.digest()


class ResponseCache:
    """At most ``size`` answers, least recently used evicted first (event-loop use only)."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, x: np.ndarray) -> np.ndarray | None:
        """The cached answer for ``x``, or ``None``."""
        key = input_key(x)
        out = self._data.get(key)
        if out is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return out

    def put(self, x: np.ndarray, y: np.ndarray) -> None:
        """Remember ``y`` as the answer for ``x`` (read-only, so no caller can alter it)."""
        y.flags.writeable = False
        key = input_key(x)
        self._data[key] = y
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ResponseCache({len(self)}/{self.size}, {self.hits} hits, {self.misses} misses)"
